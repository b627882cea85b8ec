// A WebAuthn authenticator service for the Rust end-to-end tests: headless Debian chromium
// (playwright-core) with the DevTools virtual authenticator, on a page of the gatehouse server
// under test (so the origin is the server's). Commands arrive as JSON lines on stdin, answers
// leave as JSON lines on stdout:
//   {"op":"create","options":{...}}                 -> {"ok":true,"credential":{...}} (navigator.credentials.create)
//   {"op":"get","options":{...},"uv":"required"}     -> {"ok":true,"credential":{...}} (navigator.credentials.get)
//   {"op":"set_uv","value":false}                    -> the authenticator stops verifying the user
//   {"op":"rewind_counter"}                          -> re-adds every credential with signCount 0 (a clone)
//   {"op":"screenshot","path":"..."}                 -> a PNG of the page
//   {"op":"quit"}
// Usage: node webauthn.mjs <origin> [hasUserVerification=true]
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as readline from 'node:readline';

const modules = process.env.GH_BROWSER_NODE_MODULES || new URL('./node_modules', import.meta.url).pathname;
const require = createRequire(join(modules, 'noop.js'));
const { chromium } = require('playwright-core');

const origin = process.argv[2];
const hasUv = (process.argv[3] ?? 'true') === 'true';
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'gh-chromium-')), {
  executablePath: process.env.GH_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
await page.goto(`${origin}/_gh/official`);
const cdp = await context.newCDPSession(page);
await cdp.send('WebAuthn.enable', { enableUI: false });
const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
  options: {
    protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
    hasUserVerification: hasUv, isUserVerified: hasUv, automaticPresenceSimulation: true,
  },
});

// Runs in the page: base64url <-> ArrayBuffer around navigator.credentials.
async function ceremony({ op, options, uv }) {
  const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const unb64u = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
  const pk = structuredClone(options.publicKey);
  pk.challenge = unb64u(pk.challenge);
  if (pk.user) pk.user.id = unb64u(pk.user.id);
  for (const list of [pk.excludeCredentials, pk.allowCredentials]) {
    for (const c of list ?? []) c.id = unb64u(c.id);
  }
  if (uv) pk.userVerification = uv;
  try {
    if (op === 'create') {
      const c = await navigator.credentials.create({ publicKey: pk });
      return { ok: true, credential: { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
        response: { clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject) } } };
    }
    const c = await navigator.credentials.get({ publicKey: pk });
    return { ok: true, credential: { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { clientDataJSON: b64u(c.response.clientDataJSON), authenticatorData: b64u(c.response.authenticatorData),
        signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null } } };
  } catch (e) {
    return { ok: false, error: `${e.name}: ${e.message}` };
  }
}

const say = (v) => process.stdout.write(JSON.stringify(v) + '\n');
say({ ready: true, origin: await page.evaluate(() => location.origin), secure: await page.evaluate(() => isSecureContext) });
for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    if (cmd.op === 'create' || cmd.op === 'get') {
      say(await page.evaluate(ceremony, cmd));
    } else if (cmd.op === 'set_uv') {
      await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: cmd.value });
      say({ ok: true });
    } else if (cmd.op === 'rewind_counter') {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      for (const c of credentials) {
        await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: c.credentialId });
        await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...c, signCount: 0 } });
      }
      say({ ok: true, counts: credentials.map((c) => c.signCount) });
    } else if (cmd.op === 'count') {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      say({ ok: true, credentials: credentials.length, counts: credentials.map((c) => c.signCount) });
    } else if (cmd.op === 'screenshot') {
      await page.screenshot({ path: cmd.path });
      say({ ok: true });
    } else if (cmd.op === 'quit') {
      say({ ok: true });
      break;
    } else {
      say({ ok: false, error: `unknown op ${cmd.op}` });
    }
  } catch (e) {
    say({ ok: false, error: String(e) });
  }
}
await context.close();
process.exit(0);
