// gatehouse: browser sessions bound to a non-extractable key (issue 9).
//
// At login this script creates an ECDSA P-256 key pair with WebCrypto, private key
// NON-EXTRACTABLE, kept in IndexedDB (structured clone keeps the CryptoKey object; its bytes
// never reach JavaScript), and sends a DPoP proof (RFC 9449) signed with it, so the server
// binds the session's cookies to the key's thumbprint. Refreshing the cookie session then
// needs a fresh proof signed with the same key: a copied refresh cookie alone is useless, and
// one presented with another key revokes the whole session. Without the key (another
// browser, cleared storage) the page must sign in again.
//
// CSP-compatible: an external script (`script-src 'self'`), no eval, no inline code. The
// origin used in proofs (`htu`) is the page's own, or `data-origin` on the script element
// when the server's public origin differs (tests).
//
// API, on `window.GatehouseSession`:
//   login(email, password)  -> {ok, status, body}     new key, bound browser session
//   refresh()               -> {ok, status, body, reason?}  reason "no_key" without a key
//   fetch(path, init)       -> Response, or {loginRequired: true}: adds a proof, refreshes once
//   hasKey()                -> boolean
//   createKey()             -> replaces the stored key (login does this itself)
//   forget()                -> deletes the key (logout)
"use strict";
(function () {
  const API = "/_gh/api/v1";
  const DB = "gatehouse-session-key";
  const STORE = "keys";
  const SLOT = "session";
  const script = document.currentScript;
  const ORIGIN = (script && script.dataset && script.dataset.origin) || window.location.origin;
  let nonce = null;

  function b64url(bytes) {
    let s = "";
    const a = new Uint8Array(bytes);
    for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function b64urlText(text) {
    return b64url(new TextEncoder().encode(text));
  }

  function openDb() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  async function withStore(mode, fn) {
    const db = await openDb();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const req = fn(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req ? req.result : undefined);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  async function loadKey() {
    const k = await withStore("readonly", (s) => s.get(SLOT));
    return k && k.privateKey && k.jwk ? k : null;
  }

  async function createKey() {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const full = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const jwk = { kty: full.kty, crv: full.crv, x: full.x, y: full.y };
    const stored = { privateKey: pair.privateKey, jwk };
    await withStore("readwrite", (s) => s.put(stored, SLOT));
    return stored;
  }

  async function forget() {
    await withStore("readwrite", (s) => s.delete(SLOT));
  }

  function randomId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return b64url(b);
  }

  // A DPoP proof (RFC 9449 §4.2) for `method` on our API `path`. No `ath`: the access
  // token is an HttpOnly cookie this script cannot (and must not) read.
  async function proof(key, method, path) {
    const header = { typ: "dpop+jwt", alg: "ES256", jwk: key.jwk };
    const claims = {
      jti: randomId(),
      htm: method,
      htu: ORIGIN + path,
      iat: Math.floor(Date.now() / 1000),
    };
    if (nonce) claims.nonce = nonce;
    const input = b64urlText(JSON.stringify(header)) + "." + b64urlText(JSON.stringify(claims));
    // WebCrypto ECDSA signatures are r || s, exactly the JWS encoding (RFC 7518 §3.4).
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey, new TextEncoder().encode(input));
    return input + "." + b64url(sig);
  }

  async function answer(resp) {
    const n = resp.headers.get("DPoP-Nonce");
    if (n) nonce = n;
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    return { ok: resp.ok, status: resp.status, body };
  }

  // Sends with a proof; once more with the server's nonce if it asks for one (RFC 9449 §8).
  async function withProof(key, method, path, init) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers = Object.assign({}, init.headers || {}, { DPoP: await proof(key, method, path) });
      const resp = await window.fetch(path, Object.assign({}, init, { method, headers, credentials: "same-origin" }));
      const a = await answer(resp.clone());
      const code = a.body && a.body.error && a.body.error.code;
      const asksNonce = code === "use_dpop_nonce" || (resp.headers.get("WWW-Authenticate") || "").includes("use_dpop_nonce");
      if (!asksNonce || attempt === 1) return { resp, a };
    }
    throw new Error("unreachable");
  }

  async function login(email, password) {
    const key = await createKey();
    const init = {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password, session_type: "browser" }),
    };
    const { a } = await withProof(key, "POST", API + "/sessions", init);
    return a;
  }

  async function refresh() {
    const key = await loadKey();
    if (!key) return { ok: false, status: 0, body: null, reason: "no_key" };
    const { a } = await withProof(key, "POST", API + "/sessions/refresh", {});
    return a;
  }

  // An API call on the cookie session, with a proof; on 401 one refresh, then once more.
  // When the session cannot be refreshed the page must sign in again.
  async function apiFetch(path, init) {
    init = init || {};
    const method = (init.method || "GET").toUpperCase();
    const key = await loadKey();
    if (!key) return { loginRequired: true, reason: "no_key" };
    const first = await withProof(key, method, path, init);
    if (first.resp.status !== 401) return first.resp;
    const r = await refresh();
    if (!r.ok) return { loginRequired: true, reason: "refresh_refused", status: r.status, body: r.body };
    return (await withProof(key, method, path, init)).resp;
  }

  async function hasKey() {
    return (await loadKey()) !== null;
  }

  window.GatehouseSession = Object.freeze({ login, refresh, fetch: apiFetch, hasKey, createKey, forget });
})();
