// Second factors in the browser: enrol an authenticator app from the QR page (code computed
// from the key shown), get backup codes once, then a sensitive action asks for a code, sign-in
// asks for a second step (a wrong code refused in place, a right one accepted, a backup code
// accepted once), and backup codes are regenerated; the step-up behind the sensitive form
// rotates the access cookie (R43). Then security keys: two are added with
// script in a second browser (DevTools virtual authenticator), and removed through the page —
// one without script, a code as the step-up (a wrong code refused on its field first), the
// other with the key itself as the step-up factor.
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL (a localhost origin, for
// WebAuthn), GH_EMAIL, GH_PW and those of lib.mjs. The server runs with the manual test clock;
// codes are computed at its time.

import { check, fail, launch, problems, serverClock, shots, submit, totp, visit, watchedPage } from './lib.mjs';

const base = process.env.GH_BASE_URL || fail('GH_BASE_URL is required');
const email = process.env.GH_EMAIL || fail('GH_EMAIL is required');
const pw = process.env.GH_PW || fail('GH_PW is required');
const url = (p) => `${base}${p}`;
const result = {};

async function signIn(page, a, code) {
  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form button[type=submit]');
  check(page.url() === url('/_gh/login'), 'a second step, still on the sign-in address');
  check((await page.locator('#code').count()) === 1, 'asked for a code');
  await page.fill('#code', code);
  return submit(page, 'main form button[type=submit]');
}

const browser = await launch();
try {
  const a = await watchedPage(browser, 'laptop', { javaScriptEnabled: false });
  const page = a.page;
  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form button[type=submit]');
  await page.goto(url('/_gh/account/factors'));
  await visit(page, 'factors-none');

  // Enrol: QR code and key, then one code from the "app".
  await page.fill('#password-enrol', pw);
  a.expect(201);
  await submit(page, 'form[action="/_gh/account/factors/totp"] button');
  check(await page.isVisible('img.qr'), 'the QR code is shown');
  const secret = (await page.textContent('#totp-secret')).trim();
  check(/^[A-Z2-7]{32}$/.test(secret), `a 160-bit base32 key: ${secret}`);
  await visit(page, 'totp-enrol');
  await page.fill('#totp-code', totp(secret, await serverClock(base)));
  await submit(page, 'form[action="/_gh/account/factors/totp/confirm"] button');
  const codes = await page.$$eval('#backup-codes code', (els) => els.map((e) => e.textContent.trim()));
  check(codes.length === 10, `ten backup codes shown once: ${codes.length}`);
  await visit(page, 'backup-codes');
  await page.click('text=Done');
  check((await page.textContent('#totp-state')).includes('on'), 'the app is on');
  await visit(page, 'factors-on');

  // A sensitive action now asks for a code as well (step-up through the API). The step-up
  // rotates the access cookie (R43): the page's answer carries the new one.
  const accessCookie = async () => (await a.context.cookies()).find((c) => c.name === '__Host-gh_at')?.value;
  const before = await accessCookie();
  await page.goto(url('/_gh/account/api-keys'));
  check((await page.locator('#code-create').count()) === 1, 'a code field on the key form');
  await page.fill('#label', 'bot with 2fa');
  await page.fill('#password-create', pw);
  await page.fill('#code-create', totp(secret, await serverClock(base, 30000)));
  a.expect(201);
  await submit(page, 'form[action="/_gh/account/api-keys"] button[type=submit]');
  check((await page.locator('#key-secret').count()) === 1, 'key created with a step-up code');
  const after = await accessCookie();
  check(before && after && before !== after, 'the step-up rotated the access cookie');
  await visit(page, 'api-key-created-with-code');
  await page.goto(url('/_gh/account/security'));
  check(page.url() === url('/_gh/account/security'), `still signed in with the new cookie: ${page.url()}`);

  // Sign out; sign in needs the second step. A wrong code is refused next to the field.
  await submit(page, 'nav button');
  a.expect(401);
  await signIn(page, a, '000000');
  check((await page.getAttribute('#code', 'aria-invalid')) === 'true', 'wrong code marked');
  await visit(page, 'login-second-factor-wrong');
  await page.fill('#code', totp(secret, await serverClock(base, 30000)));
  await submit(page, 'main form button[type=submit]');
  check(page.url() === url('/_gh/account/security'), `signed in with the code: ${page.url()}`);

  // A backup code works once.
  await submit(page, 'nav button');
  await signIn(page, a, codes[0]);
  check(page.url() === url('/_gh/account/security'), 'signed in with a backup code');
  await page.goto(url('/_gh/account/factors'));
  check((await page.textContent('#codes-left')).includes('9 of 10'), 'one code used');

  // New backup codes (step-up with the app).
  await page.fill('#password-regenerate', pw);
  await page.fill('#code-regenerate', totp(secret, await serverClock(base, 30000)));
  a.expect(201);
  await submit(page, 'form[action="/_gh/account/backup-codes"] button');
  const fresh = await page.$$eval('#backup-codes code', (els) => els.map((e) => e.textContent.trim()));
  check(fresh.length === 10 && !fresh.includes(codes[1]), 'a new set');
  await visit(page, 'backup-codes-regenerated');
  result.old_code = codes[1];

  // Security keys: added with script, in a second browser with a virtual authenticator.
  const b = await watchedPage(browser, 'desktop');
  const kpage = b.page;
  const cdp = await b.context.newCDPSession(kpage);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'usb', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  await signIn(kpage, b, totp(secret, await serverClock(base, 30000)));
  check(kpage.url() === url('/_gh/account/security'), `signed in on the second browser: ${kpage.url()}`);
  async function addKey(name) {
    await kpage.goto(url('/_gh/account/factors'));
    await kpage.fill('#key-name', name);
    await kpage.fill('#password-key', pw);
    await kpage.fill('#code-key', totp(secret, await serverClock(base, 30000)));
    await Promise.all([
      kpage.waitForURL(url('/_gh/account/factors?notice=key_added')),
      kpage.click('form[data-webauthn=register] button[type=submit]'),
    ]);
    check((await kpage.textContent('#webauthn-keys')).includes(name), `${name} is listed`);
  }
  await addKey('lost key');
  // That key is lost: the authenticator forgets it, so it must be removed without it.
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(credentials.length === 1, `one credential on the authenticator: ${credentials.length}`);
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: credentials[0].credentialId });
  await addKey('desk key');
  check(await kpage.isVisible('#webauthn-keys li:has-text("desk key") button[data-webauthn-step-up]'),
    'with script, a key can confirm its own removal');
  await visit(kpage, 'factors-two-keys');

  // Removed without script: a code is the step-up; a wrong one is refused on its field.
  const lost = '#webauthn-keys li:has-text("lost key")';
  await page.goto(url('/_gh/account/factors'));
  check(!(await page.isVisible(`${lost} button[data-webauthn-step-up]`)), 'no key button without script');
  await page.fill(`${lost} input[name=code]`, '000000');
  a.expect(401);
  await submit(page, `${lost} button[type=submit]`);
  check((await page.getAttribute(`${lost} input[name=code]`, 'aria-invalid')) === 'true', 'wrong code marked on the key');
  check((await page.textContent('#webauthn-keys')).includes('lost key'), 'the key is still there');
  await visit(page, 'key-remove-wrong-code');
  await page.fill(`${lost} input[name=code]`, fresh[0]);
  await submit(page, `${lost} button[type=submit]`);
  check(page.url() === url('/_gh/account/factors?notice=key_removed'), `removed: ${page.url()}`);
  check((await page.textContent('#notice')).includes('removed'), 'removal notice');
  const left = await page.textContent('#webauthn-keys');
  check(!left.includes('lost key') && left.includes('desk key'), `only the lost key is gone: ${left}`);
  await visit(page, 'key-removed-with-code');

  // With script: the key itself approves its removal (step-up with WebAuthn, same form).
  await kpage.goto(url('/_gh/account/factors'));
  await Promise.all([
    kpage.waitForURL(url('/_gh/account/factors?notice=key_removed')),
    kpage.click('#webauthn-keys li:has-text("desk key") button[data-webauthn-step-up]'),
  ]);
  check((await kpage.locator('#webauthn-keys').count()) === 0, 'no key is left');
  await visit(kpage, 'keys-removed');
  check(a.pending().length === 0 && b.pending().length === 0, `announced statuses that never came: ${a.pending()} ${b.pending()}`);
} catch (e) {
  problems.push(`stopped: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`${problems.length} problem(s):\n${problems.join('\n')}`);
  process.exit(1);
}
result.pages = shots.length;
console.log(`screenshots: ${shots.length}\n${shots.join('\n')}`);
console.log(`RESULT ${JSON.stringify(result)}`);
