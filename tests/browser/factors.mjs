// Second factors in the browser: enrol an authenticator app from the QR page (code computed
// from the key shown), get backup codes once, then a sensitive action asks for a code, sign-in
// asks for a second step (a wrong code refused in place, a right one accepted, a backup code
// accepted once), and backup codes are regenerated. The step-up behind the sensitive form
// rotates the access cookie (R43).
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL, GH_EMAIL, GH_PW and those of
// lib.mjs. The server runs with the manual test clock; codes are computed at its time.

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
  check(a.pending().length === 0, `announced statuses that never came: ${a.pending()}`);
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
