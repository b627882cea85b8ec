// A sign-in the risk engine holds (a new browser and network on an account without a second
// factor): the sign-in page says to confirm by email, the emailed link opens the confirmation
// page, "Yes, this was me" confirms it once, and the same browser then signs in.
//
// Run by crates/server/tests/pages.rs. Environment: GH_BASE_URL, GH_MAIL_FILE, GH_EMAIL, GH_PW,
// GH_FORWARDED_FOR (the network the browser appears to come from) and those of lib.mjs.

import { check, fail, launch, problems, shots, submit, visit, waitForMail, watchedPage } from './lib.mjs';

const base = process.env.GH_BASE_URL || fail('GH_BASE_URL is required');
const mailFile = process.env.GH_MAIL_FILE || fail('GH_MAIL_FILE is required');
const email = process.env.GH_EMAIL || fail('GH_EMAIL is required');
const pw = process.env.GH_PW || fail('GH_PW is required');
const url = (p) => `${base}${p}`;

const browser = await launch();
try {
  const a = await watchedPage(browser, 'new-laptop', {
    extraHTTPHeaders: { 'x-forwarded-for': process.env.GH_FORWARDED_FOR || '192.0.2.55' },
  });
  const page = a.page;
  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  a.expect(403);
  await submit(page, 'main form button[type=submit]');
  check((await page.textContent('#form-error')).toLowerCase().includes('email'), 'asked to confirm by email');
  await visit(page, 'login-held');

  const mail = await waitForMail(mailFile, email, 'Confirm a sign-in');
  const link = /https?:\/\/\S+\/_gh\/confirm-sign-in\?\S+/.exec(mail.text);
  check(link, 'a confirmation link in the mail');
  const target = new URL(link[0]);
  await page.goto(url(target.pathname + target.search));
  check((await page.textContent('main')).includes('192.0.2.55'), 'the held network is named');
  await visit(page, 'confirm-sign-in');
  await submit(page, 'main form button[type=submit]');
  check((await page.getAttribute('#message', 'data-kind')) === 'confirmed', 'confirmed');
  await visit(page, 'confirm-sign-in-done');
  await page.goBack();
  a.expect(400);
  await submit(page, 'main form button[type=submit]');
  check((await page.getAttribute('#message', 'data-kind')) === 'invalid_token', 'the link works once');
  await visit(page, 'confirm-sign-in-used');

  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form button[type=submit]');
  check(page.url() === url('/_gh/account/security'), `the confirmed browser signs in: ${page.url()}`);
  await visit(page, 'confirmed-browser-signed-in');
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
