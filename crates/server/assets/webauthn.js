// gatehouse pages: security keys and passkeys (the only part of the pages that needs script).
//
// Loaded from /_gh/assets/ (the CSP allows no inline script). It enhances three forms that
// carry a data-webauthn attribute and calls the same JSON API as every other client:
//   data-webauthn="register"  add a security key or passkey   (/account/webauthn/register/*)
//   data-webauthn="second"    the second sign-in step           (/sessions/second-factor/webauthn/*)
//   data-webauthn="passkey"   sign in with a passkey alone      (/sessions/passkey/*)
// and buttons that confirm an ordinary form with a security key instead of a code:
//   data-webauthn-step-up="<action>"  step up (/account/step-up/webauthn/*), put the token in
//                                     the form's step_up_token field, submit the form
// Without script these forms and buttons stay hidden and the rest of each page works as before.
"use strict";
(function () {
  const API = "/_gh/api/v1";
  const b64u = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const unb64u = (s) =>
    Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) =>
      c.charCodeAt(0),
    );

  function publicKey(options) {
    const pk = structuredClone(options.publicKey);
    pk.challenge = unb64u(pk.challenge);
    if (pk.user) pk.user.id = unb64u(pk.user.id);
    for (const list of [pk.excludeCredentials, pk.allowCredentials]) {
      for (const c of list || []) c.id = unb64u(c.id);
    }
    return pk;
  }

  async function create(options) {
    const c = await navigator.credentials.create({ publicKey: publicKey(options) });
    return {
      id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject) },
    };
  }

  async function get(options) {
    const c = await navigator.credentials.get({ publicKey: publicKey(options) });
    return {
      id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: {
        clientDataJSON: b64u(c.response.clientDataJSON), authenticatorData: b64u(c.response.authenticatorData),
        signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null,
      },
    };
  }

  async function post(path, body) {
    const r = await fetch(API + path, {
      method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((json.error && json.error.message) || "The request failed.");
    return json;
  }

  function field(form, name) {
    const el = form.querySelector(`[name="${name}"]`);
    return el ? el.value.trim() : "";
  }

  // The proof for adding a key: the password, or a code turned into a step-up token.
  async function proof(form) {
    const code = field(form, "code");
    if (!code) return { password: field(form, "password") };
    const method = /^\d{6}$/.test(code) ? "totp" : "backup_code";
    const t = await post("/account/step-up", { action: "change_factors", method, code });
    return { password: field(form, "password"), step_up_token: t.step_up_token };
  }

  // The first factor comes with backup codes, shown once: show them before moving on.
  function showCodes(form, codes) {
    const box = document.createElement("div");
    box.className = "secret";
    box.setAttribute("role", "alert");
    const p = document.createElement("p");
    p.textContent = "Your key was added. Save these backup codes now, offline: they are shown once, and each works once.";
    const list = document.createElement("ol");
    list.className = "codes";
    list.id = "backup-codes";
    for (const c of codes) {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = c;
      li.appendChild(code);
      list.appendChild(li);
    }
    const done = document.createElement("a");
    done.className = "button";
    done.href = "/_gh/account/factors?notice=key_added";
    done.textContent = "I saved them";
    box.append(p, list, done);
    form.replaceWith(box);
  }

  // A step-up token for `action`, approved with a security key.
  async function stepUp(action) {
    const start = await post("/account/step-up/webauthn/start", { action });
    const done = await post("/account/step-up/webauthn/finish", {
      ceremony_id: start.ceremony_id, credential: await get(start.options),
    });
    return done.step_up_token;
  }

  const flows = {
    async register(form) {
      const start = await post("/account/webauthn/register/start", {
        name: field(form, "name"), kind: field(form, "kind") || "security_key", ...(await proof(form)),
      });
      const done = await post("/account/webauthn/register/finish", {
        ceremony_id: start.ceremony_id, credential: await create(start.options),
      });
      if (Array.isArray(done.backup_codes) && done.backup_codes.length) {
        showCodes(form, done.backup_codes);
        return;
      }
      location.assign("/_gh/account/factors?notice=key_added");
    },
    async second(form) {
      const pending = field(form, "pending_token");
      const start = await post("/sessions/second-factor/webauthn/start", { pending_token: pending });
      await post("/sessions/second-factor/webauthn/finish", {
        pending_token: pending, ceremony_id: start.ceremony_id, credential: await get(start.options),
      });
      location.assign(field(form, "next") || "/_gh/account/security");
    },
    async passkey(form) {
      const start = await post("/sessions/passkey/start", {});
      await post("/sessions/passkey/finish", {
        ceremony_id: start.ceremony_id, credential: await get(start.options), session_type: "browser",
      });
      location.assign(field(form, "next") || "/_gh/account/security");
    },
  };

  function init() {
    if (!window.PublicKeyCredential) return;
    for (const button of document.querySelectorAll("button[data-webauthn-step-up]")) {
      const form = button.form;
      const token = form && form.querySelector('[name="step_up_token"]');
      if (!token) continue;
      button.hidden = false;
      const status = form.querySelector(".webauthn-status");
      button.addEventListener("click", async () => {
        if (status) status.textContent = "Follow the instructions of your browser or security key…";
        try {
          token.value = await stepUp(button.dataset.webauthnStepUp);
          form.submit();
        } catch (e) {
          if (status) status.textContent = e.message || String(e);
        }
      });
    }
    for (const form of document.querySelectorAll("form[data-webauthn]")) {
      const flow = flows[form.dataset.webauthn];
      if (!flow) continue;
      form.hidden = false;
      const status = form.querySelector(".webauthn-status");
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (status) status.textContent = "Follow the instructions of your browser or security key…";
        try {
          await flow(form);
        } catch (e) {
          if (status) status.textContent = e.message || String(e);
        }
      });
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
