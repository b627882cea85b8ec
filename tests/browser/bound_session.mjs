// Bound browser sessions (issue 9), driven in the Debian chromium with playwright-core.
//
// usage: node bound_session.mjs <base-url> <email> <password>
// env:   GH_CHROMIUM (default /usr/bin/chromium), GH_BROWSER_NODE_MODULES (default ./node_modules)
//
// Prints one JSON object of observations on stdout; the Rust test
// (crates/server/tests/bound_session.rs) asserts on them. Steps:
//  1. context A signs in through session-key.js (non-extractable key in IndexedDB) and calls
//     the API;
//  2. A's cookies are copied into context B (no key there): B's cookie refresh is refused,
//     with and without the script;
//  3. once the short-lived access cookie expired, B is locked out while A refreshes with its
//     key and keeps working;
//  4. B makes its own key and tries again: invalid_grant, the whole session is revoked, and A
//     falls back to a full login.
import { createRequire } from "node:module";
import path from "node:path";

const [base, email, password] = process.argv.slice(2);
const modules = process.env.GH_BROWSER_NODE_MODULES || path.join(path.dirname(new URL(import.meta.url).pathname), "node_modules");
const require = createRequire(path.join(modules, "noop.js"));
const { chromium } = require("playwright-core");

const out = {};
const browser = await chromium.launch({
  executablePath: process.env.GH_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
const deadline = (ms) => Date.now() + ms;

try {
  const page = `${base}/_gh/test/bound-session`;
  const a = await browser.newContext();
  const pa = await a.newPage();
  const consoleErrors = [];
  // Refused requests (401/400) are expected; anything else (CSP violations, exceptions) is not.
  const onConsole = (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && consoleErrors.push(m.text());
  pa.on("console", onConsole);
  pa.on("pageerror", (e) => consoleErrors.push(String(e)));
  await pa.goto(page);
  out.script_loaded = await pa.evaluate(() => typeof window.GatehouseSession === "object");

  // 1. Sign in: a fresh non-extractable key, a DPoP proof on login.
  out.login = await pa.evaluate(([e, p]) => window.GatehouseSession.login(e, p), [email, password]);
  out.key_extractable = await pa.evaluate(async () => {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open("gatehouse-session-key", 1);
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    const k = await new Promise((res) => {
      const g = db.transaction("keys").objectStore("keys").get("session");
      g.onsuccess = () => res(g.result);
    });
    let exported = "refused";
    try {
      await crypto.subtle.exportKey("pkcs8", k.privateKey);
      exported = "exported";
    } catch (_) {}
    return { extractable: k.privateKey.extractable, export: exported };
  });
  out.a_account = await pa.evaluate(async () => {
    const r = await window.GatehouseSession.fetch("/_gh/api/v1/account");
    return r.status;
  });
  const cookies = await a.cookies();
  out.cookie_names = cookies.map((c) => c.name).sort();

  // 2. The cookies, copied into another browser context (no key there).
  const b = await browser.newContext();
  await b.addCookies(cookies);
  const pb = await b.newPage();
  pb.on("console", onConsole);
  await pb.goto(page);
  out.b_has_key = await pb.evaluate(() => window.GatehouseSession.hasKey());
  out.b_raw_refresh = await pb.evaluate(async () => {
    const r = await fetch("/_gh/api/v1/sessions/refresh", { method: "POST", credentials: "same-origin" });
    return { status: r.status, body: await r.json().catch(() => null) };
  });
  out.b_script_refresh = await pb.evaluate(() => window.GatehouseSession.refresh());
  out.b_script_fetch = await pb.evaluate(() => window.GatehouseSession.fetch("/_gh/api/v1/account"));

  // 3. The access cookie is short-lived (the test sets it): poll until B's copy is dead.
  const until = deadline(30000);
  let bStatus = 0;
  while (Date.now() < until) {
    bStatus = await pb.evaluate(async () => (await fetch("/_gh/api/v1/account", { credentials: "same-origin" })).status);
    if (bStatus === 401) break;
    await pb.waitForTimeout(200);
  }
  out.b_access_after_expiry = bStatus;
  out.b_refresh_after_expiry = await pb.evaluate(async () => {
    const r = await fetch("/_gh/api/v1/sessions/refresh", { method: "POST", credentials: "same-origin" });
    return r.status;
  });
  // A: 401 on the expired access cookie, refresh with the key, retry: 200.
  out.a_after_expiry = await pa.evaluate(async () => {
    const r = await window.GatehouseSession.fetch("/_gh/api/v1/account");
    return r.status === undefined ? r : { status: r.status, email: (await r.json()).email };
  });
  out.a_refresh = await pa.evaluate(() => window.GatehouseSession.refresh());

  // 4. B brings its own key: the server sees another key on a bound family and revokes it.
  out.b_own_key_refresh = await pb.evaluate(async () => {
    await window.GatehouseSession.createKey();
    return window.GatehouseSession.refresh();
  });
  out.a_after_revocation = await pa.evaluate(async () => {
    const r = await window.GatehouseSession.refresh();
    const f = await window.GatehouseSession.fetch("/_gh/api/v1/account");
    return { refresh: r.status, fetch: f.loginRequired === true ? "login_required" : f.status };
  });
  // A full login again works (new key, new session).
  out.a_relogin = await pa.evaluate(([e, p]) => window.GatehouseSession.login(e, p), [email, password]);
  out.console_errors = consoleErrors;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
