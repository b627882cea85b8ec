// Security keys and passkeys in the pages (the one place the pages use script,
// /_gh/assets/webauthn.js), with the DevTools virtual authenticator: add a passkey from the
// second-factor page, then sign in with password + key as the second step, then with the
// passkey alone.
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL, GH_EMAIL, GH_PW and those of
// lib.mjs.

import { check, fail, launch, problems, shots, submit, visit, watchedPage } from './lib.mjs';

const base = process.env.GH_BASE_URL || fail('GH_BASE_URL is required');
const email = process.env.GH_EMAIL || fail('GH_EMAIL is required');
const pw = process.env.GH_PW || fail('GH_PW is required');
const url = (p) => `${base}${p}`;

const browser = await launch();
let page;
try {
  const a = await watchedPage(browser, 'laptop');
  page = a.page;
  const cdp = await a.context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form[action="/_gh/login"]:not([data-webauthn]) button[type=submit]');
  await page.goto(url('/_gh/account/factors'));
  check(await page.isVisible('form[data-webauthn=register]'), 'the key form shows with script');
  await page.fill('#key-name', 'laptop passkey');
  await page.selectOption('#key-kind', 'passkey');
  await page.fill('#password-key', pw);
  await visit(page, 'passkey-add');
  await page.click('form[data-webauthn=register] button[type=submit]');
  // The first factor comes with backup codes, shown once before moving on.
  await page.waitForSelector('#backup-codes');
  check((await page.locator('#backup-codes code').count()) === 10, 'ten backup codes shown');
  await visit(page, 'passkey-added-backup-codes');
  await submit(page, 'text=I saved them');
  check(page.url() === url('/_gh/account/factors?notice=key_added'), `back on the factors: ${page.url()}`);
  check((await page.textContent('#webauthn-keys')).includes('laptop passkey'), 'the key is listed');
  await visit(page, 'passkey-added');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(credentials.length === 1 && credentials[0].isResidentCredential, 'one discoverable credential');

  // Password, then the key as the second step.
  await submit(page, 'nav button');
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form[action="/_gh/login"]:not([data-webauthn]) button[type=submit]');
  check(await page.isVisible('form[data-webauthn=second]'), 'the key is offered as the second step');
  await visit(page, 'login-second-step-key');
  await Promise.all([
    page.waitForURL(url('/_gh/account/security')),
    page.click('form[data-webauthn=second] button'),
  ]);

  // The passkey alone.
  await submit(page, 'nav button');
  check(await page.isVisible('form[data-webauthn=passkey]'), 'passkey sign-in offered');
  await Promise.all([
    page.waitForURL(url('/_gh/account/security')),
    page.click('form[data-webauthn=passkey] button'),
  ]);
  await visit(page, 'signed-in-with-passkey');
  check(a.pending().length === 0, `announced statuses that never came: ${a.pending()}`);
} catch (e) {
  problems.push(`stopped: ${e.stack || e}`);
  // What the script told the person, for the failure report.
  const said = await page?.$$eval('.webauthn-status', (els) => els.map((el) => el.textContent)).catch(() => []);
  problems.push(`on ${page?.url()}, status: ${JSON.stringify(said)}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`${problems.length} problem(s):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`screenshots: ${shots.length}\n${shots.join('\n')}`);
console.log(`RESULT ${JSON.stringify({ pages: shots.length })}`);
