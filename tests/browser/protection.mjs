// Account protection and recovery in the browser: anti-phishing code, withdrawal address
// (pending, then cancelled from the emailed one-click link), settings lock (lock, unlock
// scheduled, unlock cancelled), a locked setting refused, and recovery without signing in:
// password reset from the emailed link, and a recovery request.
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL, GH_MAIL_FILE, GH_EMAIL, GH_PW,
// GH_PW2 and those of lib.mjs.

import { check, fail, launch, problems, shots, submit, visit, waitForMail, watchedPage } from './lib.mjs';

const base = process.env.GH_BASE_URL || fail('GH_BASE_URL is required');
const mailFile = process.env.GH_MAIL_FILE || fail('GH_MAIL_FILE is required');
const email = process.env.GH_EMAIL || fail('GH_EMAIL is required');
const pw = process.env.GH_PW || fail('GH_PW is required');
const pw2 = process.env.GH_PW2 || fail('GH_PW2 is required');
const url = (p) => `${base}${p}`;
const local = (link) => {
  const u = new URL(link);
  return url(u.pathname + u.search);
};

const browser = await launch();
try {
  const a = await watchedPage(browser, 'laptop', { javaScriptEnabled: false });
  const page = a.page;
  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form button[type=submit]');

  // Anti-phishing code.
  await page.goto(url('/_gh/account/protection'));
  await visit(page, 'protection');
  await page.fill('#anti-phishing-code', 'blue heron 42');
  await page.fill('#password-apc', pw);
  await submit(page, 'form[action="/_gh/account/anti-phishing-code"] button');
  check((await page.textContent('#notice')).includes('anti-phishing code'), 'code saved');

  // A withdrawal address: pending, with a cancel link by email that works from the page.
  await page.goto(url('/_gh/account/withdrawal-addresses'));
  await visit(page, 'withdrawal-addresses-empty');
  await page.fill('#asset', 'BTC');
  await page.fill('#address', 'bc1qexampleaddress0000000000');
  await page.fill('#label', 'cold wallet');
  await page.fill('#password-address', pw);
  await submit(page, 'form[action="/_gh/account/withdrawal-addresses"] button[type=submit]');
  check((await page.textContent('#addresses')).includes('pending'), 'the address waits');
  await visit(page, 'withdrawal-address-pending');
  const added = await waitForMail(mailFile, email, 'withdrawal address was added');
  check(added.text.includes('blue heron 42'), 'the anti-phishing code is in our mail');
  const cancel = /https?:\/\/\S+\/_gh\/link\?\S+/.exec(added.text);
  check(cancel, 'a cancel link');
  // The one-click link page: the pages' layout, one button; opening it changes nothing.
  await page.goto(local(cancel[0]));
  check((await page.textContent('h1')).includes('Cancel the withdrawal address'), 'the link page says what it does');
  await visit(page, 'link-page');
  await submit(page, '#link-form button[type=submit]');
  check((await page.textContent('main')).includes('Done'), 'cancelled from the link');
  await page.goto(url('/_gh/account/withdrawal-addresses'));
  check((await page.textContent('#addresses')).includes('cancelled'), 'the address is cancelled');

  // Settings lock: lock, then a locked setting is refused; unlocking waits and can be cancelled.
  await page.goto(url('/_gh/account/protection'));
  await submit(page, 'form[action="/_gh/account/settings-lock"] button');
  check((await page.textContent('#lock-state')).includes('locked'), 'locked');
  await visit(page, 'settings-locked');
  await page.fill('#password-unlock', pw);
  await submit(page, 'form[action="/_gh/account/settings-lock/unlock"] button');
  check((await page.textContent('#unlock-at')).includes('UTC'), 'unlock scheduled');
  await visit(page, 'settings-unlock-scheduled');
  await submit(page, 'form[action="/_gh/account/settings-lock/cancel"] button');
  check((await page.textContent('#notice')).includes('cancelled'), 'unlock cancelled');

  // Recovery without signing in: a reset link by email, a new password, no automatic sign-in.
  await submit(page, 'nav button');
  await page.goto(url('/_gh/recover'));
  await visit(page, 'recover');
  await page.fill('#reset-email', email);
  await submit(page, 'form[action="/_gh/recover/reset"] button');
  check((await page.getAttribute('#message', 'data-kind')) === 'reset_sent', 'reset sent');
  const reset = await waitForMail(mailFile, email, 'Reset your password');
  const link = /https?:\/\/\S+\/_gh\/reset-password\?token=[A-Za-z0-9_-]+/.exec(reset.text);
  check(link, 'a reset link');
  // The new-password page behind the link, in the pages' layout.
  await page.goto(local(link[0]));
  await visit(page, 'reset-password');
  await page.fill('#new-password', pw2);
  await submit(page, '#reset-form button[type=submit]');
  check((await page.textContent('h1')).includes('Password changed'), 'password reset');
  await page.goto(url('/_gh/account/security'));
  check(page.url().startsWith(url('/_gh/login')), 'not signed in by the reset');

  // A recovery request answers the same for any address.
  await page.goto(url('/_gh/recover'));
  await page.fill('#case-email', email);
  await page.fill('#evidence', 'I opened the account in November and last deposited 0.1 BTC.');
  a.expect(202);
  await submit(page, 'form[action="/_gh/recover/case"] button');
  check((await page.getAttribute('#message', 'data-kind')) === 'case_opened', 'case opened');
  await visit(page, 'recovery-requested');
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
console.log(`screenshots: ${shots.length}\n${shots.join('\n')}`);
console.log(`RESULT ${JSON.stringify({ pages: shots.length })}`);
