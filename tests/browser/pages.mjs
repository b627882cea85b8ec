// Drives headless Chromium, with JavaScript disabled, through every page flow of gatehouse
// (issue 7): official channels, URL checker, register (refused, then accepted), email
// verification from the link in the real SMTP sink, sign in (refused, then accepted), security
// centre and password change, devices with revoke from a second browser, API keys (create with
// scopes and allowlist, secret shown once, unlock withdrawals, change allowlist, rotate,
// revoke), security history, sign out.
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL, GH_MAIL_FILE, GH_EMAIL, GH_PW,
// GH_PW2 and those of lib.mjs. Prints `RESULT {json}` for the Rust side to cross-check.

import { check, fail, launch, problems, shots, submit, visit, waitForMail, watchedPage } from './lib.mjs';

const base = process.env.GH_BASE_URL || fail('GH_BASE_URL is required');
const mailFile = process.env.GH_MAIL_FILE || fail('GH_MAIL_FILE is required');
const email = process.env.GH_EMAIL || 'pat@example.com';
const pw = process.env.GH_PW || fail('GH_PW is required');
const pw2 = process.env.GH_PW2 || fail('GH_PW2 is required');
const url = (p) => `${base}${p}`;
const result = {};

const browser = await launch();
try {
  // The whole flow runs with JavaScript off: every page is plain HTML forms (only WebAuthn
  // will need script, from /_gh/assets/).
  const a = await watchedPage(browser, 'laptop', { javaScriptEnabled: false });
  const page = a.page;

  // Anti-phishing pages, in the layout.
  await page.goto(url('/_gh/official'));
  check((await page.textContent('h1')) === 'Official channels', 'official heading');
  await visit(page, 'official-channels');
  await page.click('footer a[href="/_gh/check-url"]');
  await page.fill('#url', 'https://upblt-login.example/<script>');
  await submit(page, 'form[role=search] button');
  check((await page.getAttribute('#verdict', 'data-class')) !== null, 'a verdict is shown');
  check((await page.inputValue('#url')).includes('<script>'), 'the link is shown back as text');
  await visit(page, 'check-url-verdict');

  // Register: a weak password is refused next to the field, then a good one is accepted.
  await page.goto(url('/_gh/register'));
  await visit(page, 'register');
  await page.fill('#email', email);
  await page.fill('#password', 'short');
  a.expect(400);
  await submit(page, 'main form button[type=submit]');
  check((await page.getAttribute('#password', 'aria-invalid')) === 'true', 'weak password marked invalid');
  check((await page.getAttribute('#password', 'aria-describedby')).includes('password-error'), 'error tied');
  check((await page.inputValue('#email')) === email, 'email kept');
  check((await page.inputValue('#password')) === '', 'password never echoed');
  await visit(page, 'register-weak-password');
  await page.fill('#password', pw);
  a.expect(202);
  let resp = await submit(page, 'main form button[type=submit]');
  check(resp.status() === 202, `register answered ${resp.status()}`);
  check((await page.getAttribute('#message', 'data-kind')) === 'verification_sent', 'check your email');
  await visit(page, 'register-sent');

  // The verification link from the real mail: a page with a button (prefetch-safe).
  const mail = await waitForMail(mailFile, email, 'Verify your email');
  const link = /https?:\/\/[^\s]+\/_gh\/verify-email\?token=[A-Za-z0-9_-]+/.exec(mail.text);
  check(link, 'a verification link in the mail');
  const target = new URL(link[0]);
  await page.goto(url(target.pathname + target.search));
  await visit(page, 'verify-email');
  await submit(page, 'main form button[type=submit]');
  check((await page.getAttribute('#message', 'data-kind')) === 'verified', 'verified');
  await visit(page, 'verify-email-done');
  // The token is single use.
  await page.goBack();
  a.expect(400);
  resp = await submit(page, 'main form button[type=submit]');
  check(resp.status() === 400, 'second use of the link refused');
  await visit(page, 'verify-email-used');

  // Sign in: a wrong password gets the one generic message, then the right one gets in.
  await page.goto(url('/_gh/account/devices'));
  check(page.url().startsWith(url('/_gh/login?next=/_gh/account/devices')), `redirected to sign in: ${page.url()}`);
  await page.fill('#email', email);
  await page.fill('#password', 'not the password at all');
  a.expect(401);
  await submit(page, 'main form button[type=submit]');
  check((await page.textContent('#form-error')).includes('Invalid email or password'), 'generic failure');
  await visit(page, 'login-failed');
  await page.fill('#password', pw);
  await submit(page, 'main form button[type=submit]');
  check(page.url() === url('/_gh/account/devices'), `back to where we were going: ${page.url()}`);
  const cookies = await a.context.cookies();
  check(cookies.filter((c) => c.name.startsWith('__Host-') && c.httpOnly && c.secure).length === 3, 'three __Host- cookies');

  // Security centre; a wrong current password is refused on that field.
  await page.click('nav a[href="/_gh/account/security"]');
  check((await page.textContent('#account-email')).includes(email), 'the account is shown');
  await visit(page, 'security-centre');
  await page.fill('#current-password', 'wrong wrong wrong wrong');
  await page.fill('#new-password', pw2);
  a.expect(403);
  await submit(page, 'form[action="/_gh/account/password"] button');
  check((await page.getAttribute('#current-password', 'aria-invalid')) === 'true', 'current password marked');
  await visit(page, 'security-centre-wrong-password');

  // A second device signs in; the first sees it and signs it out (password re-entered).
  const b = await watchedPage(browser, 'phone', {
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
  });
  await b.page.goto(url('/_gh/login'));
  await b.page.fill('#email', email);
  await b.page.fill('#password', pw);
  await submit(b.page, 'main form button[type=submit]');
  check(b.page.url() === url('/_gh/account/security'), 'second device signed in');

  await page.click('nav a[href="/_gh/account/devices"]');
  check((await page.locator('li.device').count()) === 2, 'two devices listed');
  check((await page.textContent('#devices')).includes('Firefox on Linux'), 'the other device by name');
  await visit(page, 'devices');
  const other = page.locator('li.device form').first();
  await other.locator('input[type=password]').fill('wrong wrong wrong wrong');
  a.expect(403);
  await Promise.all([page.waitForNavigation(), other.locator('button').click()]);
  check((await page.locator('li.device [aria-invalid=true]').count()) === 1, 'the wrong password is marked');
  await visit(page, 'devices-wrong-password');
  const again = page.locator('li.device form').first();
  await again.locator('input[type=password]').fill(pw);
  await Promise.all([page.waitForNavigation(), again.locator('button').click()]);
  check((await page.textContent('#notice')).includes('signed out'), 'revoked notice');
  check((await page.locator('li.device').count()) === 1, 'one device left');
  await visit(page, 'devices-revoked');
  // The phone is out at once.
  await b.page.goto(url('/_gh/account/security'));
  check(b.page.url().startsWith(url('/_gh/login')), `the revoked device must sign in again: ${b.page.url()}`);
  await b.context.close();

  // API keys: create with scopes and an allowlist; the secret shows once.
  await page.click('nav a[href="/_gh/account/api-keys"]');
  await visit(page, 'api-keys-empty');
  await page.fill('#label', 'trading bot');
  await page.check('#scope-place_orders');
  await page.check('#scope-withdraw');
  await page.fill('#password-create', pw);
  a.expect(400);
  await submit(page, 'form[action="/_gh/account/api-keys"] button[type=submit]');
  check((await page.locator('.field-error').count()) >= 1, 'withdraw without an allowlist is refused in place');
  check(await page.isChecked('#scope-withdraw'), 'the choices are kept');
  await visit(page, 'api-keys-refused');
  await page.fill('#allowlist', '203.0.113.0/24');
  await page.fill('#password-create', pw);
  a.expect(201);
  resp = await submit(page, 'form[action="/_gh/account/api-keys"] button[type=submit]');
  check(resp.status() === 201, 'key created');
  result.key_id = (await page.textContent('#key-id')).trim();
  result.secret = (await page.textContent('#key-secret')).trim();
  check(result.secret.length >= 40, 'a secret is shown');
  await visit(page, 'api-key-created');
  await page.click('text=Done');
  check(!(await page.content()).includes(result.secret), 'the secret is not shown again');
  check((await page.textContent('main')).includes('withdrawals locked'), 'withdraw starts locked');
  await visit(page, 'api-key-detail');

  // Unlock withdrawals, narrow the allowlist.
  await page.fill('#password-unlock', pw);
  await submit(page, 'form[action$="/unlock-withdraw"] button');
  check((await page.textContent('#notice')).includes('unlocked'), 'unlocked');
  await page.fill('#allowlist', '203.0.113.7');
  await page.fill('#password-allowlist', pw);
  await submit(page, 'form[action$="/allowlist"] button');
  check((await page.textContent('#key-allowlist')).includes('203.0.113.7/32'), 'allowlist narrowed');
  await visit(page, 'api-key-updated');

  // Rotate: a successor with its own secret, shown once; then revoke the successor.
  await page.fill('#password-rotate', pw);
  a.expect(201);
  await submit(page, 'form[action$="/rotate"] button');
  result.successor_id = (await page.textContent('#key-id')).trim();
  check(result.successor_id !== result.key_id, 'a new key id');
  check((await page.textContent('#key-secret')).trim() !== result.secret, 'a new secret');
  await visit(page, 'api-key-rotated');
  await page.click('text=Done');
  await page.fill('#password-revoke', pw);
  await submit(page, 'form[action$="/revoke"] button');
  check((await page.textContent('#notice')).includes('revoked'), 'revoked');
  check((await page.locator('#keys tbody tr').count()) === 2, 'both keys listed');
  await visit(page, 'api-keys-list');

  // Change the password (signs out other devices), then the history shows it all.
  await page.click('nav a[href="/_gh/account/security"]');
  await page.fill('#current-password', pw);
  await page.fill('#new-password', pw2);
  await submit(page, 'form[action="/_gh/account/password"] button');
  check((await page.textContent('#notice')).includes('password was changed'), 'password changed');
  await page.click('nav a[href="/_gh/account/history"]');
  const kinds = await page.$$eval('#history tbody tr', (rows) => rows.map((r) => r.dataset.kind));
  for (const k of ['login_succeeded', 'login_failed', 'session_revoked', 'api_key_created', 'api_key_rotated', 'password_changed']) {
    check(kinds.includes(k), `history shows ${k}: ${kinds}`);
  }
  await visit(page, 'security-history');

  // Sign out: the cookies go and the account pages send you to sign in.
  await submit(page, 'nav button');
  check(page.url() === url('/_gh/login?notice=signed_out'), `signed out: ${page.url()}`);
  check((await page.textContent('#notice')).includes('signed out'), 'signed-out notice');
  await visit(page, 'signed-out');
  await page.goto(url('/_gh/account/api-keys'));
  check(page.url().startsWith(url('/_gh/login')), 'signed out for real');
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
