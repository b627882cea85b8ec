// The admin console (issue 7) in Chromium with the DevTools virtual authenticator: two admins
// each add a passkey and sign in with it (the console refuses their password-only sessions),
// review a high-value recovery case (two different reviewers), one freezes and unfreezes an
// account and reads the audit log; a non-admin is refused.
//
// Run by crates/server/tests/admin_pages.rs. Environment: GH_BASE_URL, GH_ADMIN1, GH_ADMIN2,
// GH_USER (non-admin), GH_TARGET (account to freeze), GH_CASE (high-value recovery case id),
// GH_CASE2 (an ordinary case, rejected), GH_PW and
// those of lib.mjs.

import { check, fail, launch, problems, serverClock, shots, submit, visit, watchedPage } from './lib.mjs';

const env = (k) => process.env[k] || fail(`${k} is required`);
const base = env('GH_BASE_URL');
const [admin1, admin2, user, targetEmail, caseId, case2Id, pw] =
  ['GH_ADMIN1', 'GH_ADMIN2', 'GH_USER', 'GH_TARGET', 'GH_CASE', 'GH_CASE2', 'GH_PW'].map(env);
const url = (p) => `${base}${p}`;

async function passwordLogin(page, email) {
  await page.goto(url('/_gh/login'));
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await submit(page, 'main form[action="/_gh/login"]:not([data-webauthn]) button[type=submit]');
  check(page.url() === url('/_gh/account/security'), `signed in with the password: ${page.url()}`);
}

/** A browser profile with its own virtual authenticator. */
async function profile(browser, name) {
  const a = await watchedPage(browser, name);
  const cdp = await a.context.newCDPSession(a.page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return a;
}

/** Signs in with the password, is refused by the console, adds a passkey, signs in with it. */
async function adminWithPasskey(a, email, n) {
  const { page } = a;
  await passwordLogin(page, email);
  a.expect(403);
  const resp = await page.goto(url('/_gh/admin/recovery'));
  check(resp.status() === 403, `a password-only admin session is refused: ${resp.status()}`);
  check((await page.getAttribute('#message', 'data-kind')) === 'admin_webauthn_required', 'refused: webauthn required');
  await visit(page, `admin${n}-password-only-refused`);

  await page.goto(url('/_gh/account/factors'));
  await page.fill('#key-name', `admin ${n} passkey`);
  await page.selectOption('#key-kind', 'passkey');
  await page.fill('#password-key', pw);
  await page.click('form[data-webauthn=register] button[type=submit]');
  await page.waitForSelector('#backup-codes');
  await submit(page, 'text=I saved them');
  check(page.url() === url('/_gh/account/factors?notice=key_added'), `passkey added: ${page.url()}`);
  await submit(page, 'nav button');

  // The admin sign-in page runs the passkey ceremony (script from /_gh/assets/webauthn.js).
  await page.goto(url('/_gh/admin/sign-in'));
  check(await page.isVisible('#admin-passkey'), 'passkey sign-in offered on the admin sign-in page');
  await visit(page, `admin${n}-sign-in`);
  await Promise.all([page.waitForURL(url('/_gh/admin/recovery')), page.click('#admin-passkey button')]);
}

async function approve(page, n) {
  await submit(page, `#queue tr[data-case="${caseId}"] a`);
  check((await page.textContent('#evidence')).includes('ID card'), 'the evidence is shown');
  await visit(page, `admin${n}-case`);
  await page.fill('#approve-password', pw);
  await page.fill('#approve-note', `checked by reviewer ${n}`);
  await submit(page, '#approve button');
}

const browser = await launch();
let current;
try {
  // The first reviewer.
  const a1 = await profile(browser, 'admin1');
  current = a1.page;
  await adminWithPasskey(a1, admin1, 1);
  check((await a1.page.textContent(`#queue tr[data-case="${caseId}"] .status`)).trim() === 'awaiting review', 'case in the queue');
  await visit(a1.page, 'admin1-queue');
  await approve(a1.page, 1);
  check((await a1.page.textContent('#case-status')).trim() === 'awaiting second reviewer', 'first approval recorded');
  check((await a1.page.textContent('#notice')).includes('second reviewer'), 'notice: second reviewer');
  await visit(a1.page, 'admin1-awaiting-second-reviewer');
  // The same reviewer cannot be the second one.
  a1.expect(409);
  await a1.page.fill('#approve-password', pw);
  const again = await submit(a1.page, '#approve button');
  check(again.status() === 409, `same reviewer twice refused: ${again.status()}`);
  check(await a1.page.isVisible('#form-error'), 'the refusal is shown');
  await visit(a1.page, 'admin1-same-reviewer-refused');

  // The second reviewer carries it out.
  const a2 = await profile(browser, 'admin2');
  current = a2.page;
  await adminWithPasskey(a2, admin2, 2);
  check((await a2.page.textContent(`#queue tr[data-case="${caseId}"] .status`)).trim() === 'awaiting second reviewer', 'queue shows the state');
  await visit(a2.page, 'admin2-queue');
  await approve(a2.page, 2);
  check((await a2.page.textContent('#case-status')).trim() === 'executed', 'second approval executes');
  await visit(a2.page, 'admin2-executed');

  // An ordinary case is rejected.
  await a2.page.goto(url('/_gh/admin/recovery'));
  await submit(a2.page, `#queue tr[data-case="${case2Id}"] a`);
  await a2.page.fill('#reject-password', pw);
  await a2.page.fill('#reject-note', 'evidence does not match');
  await submit(a2.page, '#reject button');
  check((await a2.page.textContent('#case-status')).trim() === 'rejected', 'the case is rejected');
  check(!(await a2.page.isVisible('#approve')), 'a closed case offers no decision');
  await visit(a2.page, 'admin2-rejected');

  // Freeze, then unfreeze.
  await a2.page.goto(url('/_gh/admin/accounts'));
  await visit(a2.page, 'admin2-accounts');
  await a2.page.fill('#freeze-email', targetEmail);
  await a2.page.fill('#freeze-reason', 'suspicious withdrawals');
  await a2.page.fill('#freeze-password', pw);
  await submit(a2.page, '#freeze button');
  check(a2.page.url() === url('/_gh/admin/accounts?notice=frozen'), `frozen: ${a2.page.url()}`);
  await visit(a2.page, 'admin2-frozen');
  await a2.page.fill('#unfreeze-email', targetEmail);
  await a2.page.fill('#unfreeze-password', pw);
  await submit(a2.page, '#unfreeze button');
  check(a2.page.url() === url('/_gh/admin/accounts?notice=unfrozen'), `unfrozen: ${a2.page.url()}`);
  await visit(a2.page, 'admin2-unfrozen');

  // The audit log: everything, then one account and one kind. The access token has expired
  // meanwhile (10 min): the console refreshes it and stays on the page asked for.
  await serverClock(base, 601_000);
  await a2.page.goto(url('/_gh/admin/audit'));
  check(a2.page.url() === url('/_gh/admin/audit'), `refreshed, not sent to sign in: ${a2.page.url()}`);
  check((await a2.page.locator('#audit tbody tr').count()) > 0, 'events listed');
  await visit(a2.page, 'admin2-audit');
  // Paginated: the older page starts below where this one ended.
  const seqs = async () => a2.page.$$eval('#audit tbody tr td:first-child', (tds) => tds.map((td) => Number(td.textContent)));
  const first = await seqs();
  check(first.length === 50 && first.every((n, i) => i === 0 || n < first[i - 1]), `50 newest first: ${first}`);
  await submit(a2.page, '#older');
  const older = await seqs();
  check(older.length > 0 && older[0] < first[first.length - 1], `older page: ${older}`);
  await visit(a2.page, 'admin2-audit-older');
  await a2.page.goto(url('/_gh/admin/audit'));
  await a2.page.fill('#audit-email', targetEmail);
  await submit(a2.page, '#audit-filter button');
  const kinds = await a2.page.$$eval('#audit tbody tr', (rows) => rows.map((r) => r.dataset.kind));
  check(kinds[0] === 'account_unfrozen' && kinds[1] === 'account_frozen', `newest first: ${kinds}`);
  await a2.page.fill('#audit-kind', 'recovery_approved');
  await a2.page.fill('#audit-email', '');
  await submit(a2.page, '#audit-filter button');
  const approvals = await a2.page.$$eval('#audit tbody tr', (rows) => rows.map((r) => r.dataset.kind));
  check(approvals.length === 2 && approvals.every((k) => k === 'recovery_approved'), `kind filter: ${approvals}`);
  await visit(a2.page, 'admin2-audit-filtered');

  // A non-admin is refused.
  const u = await watchedPage(browser, 'user');
  current = u.page;
  await passwordLogin(u.page, user);
  u.expect(403);
  const resp = await u.page.goto(url('/_gh/admin/audit'));
  check(resp.status() === 403, `a non-admin is refused: ${resp.status()}`);
  check((await u.page.getAttribute('#message', 'data-kind')) === 'admin_required', 'refused: admin required');
  await visit(u.page, 'non-admin-refused');

  for (const a of [a1, a2, u]) check(a.pending().length === 0, `announced statuses that never came: ${a.pending()}`);
} catch (e) {
  problems.push(`stopped: ${e.stack || e}`);
  const said = await current?.$$eval('.webauthn-status, #form-error, #message', (els) => els.map((el) => el.textContent)).catch(() => []);
  problems.push(`on ${current?.url()}, said: ${JSON.stringify(said)}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`${problems.length} problem(s):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`screenshots: ${shots.length}\n${shots.join('\n')}`);
console.log(`RESULT ${JSON.stringify({ pages: shots.length })}`);
