// Shared helpers for the browser scripts: launch the Debian chromium through playwright-core,
// watch every page for console errors and failed requests, check basic accessibility, and take
// a screenshot of every page.
//
// Environment: GH_CHROMIUM (default /usr/bin/chromium), GH_BROWSER_NODE_MODULES (default
// ./node_modules next to this file), GH_SCREENSHOTS (directory for the PNGs).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.GH_BROWSER_NODE_MODULES || path.join(here, 'node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
const { chromium } = require('playwright-core');

/** Everything that went wrong, reported at the end (and fatal). */
export const problems = [];

/** Fails the run with a message. */
export function fail(msg) {
  throw new Error(msg);
}

/** Asserts `cond`. */
export function check(cond, msg) {
  if (!cond) fail(`check failed: ${msg}`);
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.GH_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
}

/**
 * A watched page: every console error, page error, failed request and unexpected error
 * status is recorded in `problems`. A main-document error status is allowed only when the
 * step announced it with `expect(status)`; Chromium then also logs "Failed to load resource …
 * status of N", which is allowed for that status only.
 */
export async function watchedPage(browser, name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 820 }, ...options });
  const page = await context.newPage();
  const state = { expected: [], seen: [] };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const m = /Failed to load resource: the server responded with a status of (\d+)/.exec(msg.text());
    if (m) {
      const status = Number(m[1]);
      const i = state.seen.indexOf(status);
      if (i >= 0) {
        state.seen.splice(i, 1);
        return;
      }
      const j = state.expected.indexOf(status);
      if (j >= 0) return;
    }
    problems.push(`[${name}] console error on ${page.url()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`[${name}] page error on ${page.url()}: ${err.message}`));
  page.on('requestfailed', (req) => {
    // The icon loads after the page; a navigation that follows at once cancels it. Nothing
    // else is excused.
    if (req.url().endsWith('/_gh/assets/favicon.svg') && req.failure()?.errorText === 'net::ERR_ABORTED') return;
    problems.push(`[${name}] request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on('response', (resp) => {
    const status = resp.status();
    if (status < 400) return;
    const req = resp.request();
    if (req.resourceType() === 'document' && req.frame() === page.mainFrame()) {
      const i = state.expected.indexOf(status);
      if (i >= 0) {
        state.expected.splice(i, 1);
        state.seen.push(status);
        return;
      }
    }
    problems.push(`[${name}] unexpected ${status} for ${req.method()} ${resp.url()}`);
  });
  return {
    page,
    context,
    /** Announces that the next document will answer `status`. */
    expect(status) {
      if (status >= 400) state.expected.push(status);
    },
    /** Whether every announced status happened. */
    pending() {
      return state.expected.slice();
    },
  };
}

let shotNo = 0;
const shotDir = process.env.GH_SCREENSHOTS || path.join(here, '../../test-artifacts/screenshots');
fs.mkdirSync(shotDir, { recursive: true });
export const shots = [];

/** Checks the page (accessibility basics) and writes a full-page screenshot. */
export async function visit(page, name) {
  await page.waitForLoadState('load');
  const issues = await page.evaluate(() => {
    const out = [];
    const byId = (id) => document.getElementById(id);
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      const named = (el.labels && el.labels.length > 0 && el.labels[0].textContent.trim()) || el.getAttribute('aria-label');
      if (!named) out.push(`control without a label: ${el.outerHTML.slice(0, 120)}`);
      const described = (el.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
      for (const id of described) if (!byId(id)) out.push(`aria-describedby points nowhere: ${id}`);
      if (el.getAttribute('aria-invalid') === 'true' && !described.some((id) => id.endsWith('-error') && byId(id))) {
        out.push(`invalid control ${el.id} without its error text tied by aria-describedby`);
      }
    }
    for (const el of document.querySelectorAll('.field-error')) {
      const tied = document.querySelector(`[aria-describedby~="${el.id}"]`);
      if (!tied) out.push(`error text ${el.id} not tied to a control`);
    }
    for (const b of document.querySelectorAll('button')) if (!b.textContent.trim()) out.push('button without text');
    for (const a of document.querySelectorAll('a')) if (!a.textContent.trim()) out.push(`link without text: ${a.href}`);
    for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) out.push('image without alt');
    if (!document.documentElement.lang) out.push('html without lang');
    if (!document.title.trim()) out.push('page without title');
    if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
    if (!document.querySelector('main')) out.push('no main landmark');
    if (!document.querySelector('footer a[href="/_gh/official"]')) out.push('footer does not link the official channels');
    const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (dup.length) out.push(`duplicate ids: ${dup.join(', ')}`);
    // (Chromium's password manager leaves an empty style attribute on password fields.)
    for (const el of document.querySelectorAll('[style]:not([style=""]), script:not([src])')) out.push(`inline style or script: ${el.outerHTML.slice(0, 160)}`);
    // The stylesheet loaded (a page without it would still "work" but look broken).
    if (getComputedStyle(document.body).display !== 'flex') out.push('stylesheet not applied');
    return out;
  });
  for (const i of issues) problems.push(`[${name}] ${page.url()}: ${i}`);
  shotNo += 1;
  const file = path.join(shotDir, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/** Clicks `selector` and waits for the navigation it causes; returns the final response. */
export async function submit(page, selector) {
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
  return resp;
}

/** Polls (with a deadline) the SMTP sink's JSONL file for a message to `to` about `subject`. */
export async function waitForMail(file, to, subject) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const m = JSON.parse(line);
      if ((m.rcpt_tos || []).includes(to) && String(m.subject || '').includes(subject)) return m;
    }
    if (Date.now() > deadline) fail(`no mail to ${to} about ${subject}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** RFC 4648 base32 (no padding) to bytes. */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) fail(`bad base32 character ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA1, 30 s, 6 digits) at `nowMs`. */
export function totp(secret, nowMs) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(nowMs / 30000)));
  const h = crypto.createHmac('sha1', base32(secret)).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}

/** Moves the server's test clock by `ms` and returns its time (`POST /_gh/test/clock`). */
export async function serverClock(base, ms = 0) {
  const r = await fetch(`${base}/_gh/test/clock`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ advance_ms: ms }),
  });
  check(r.ok, `test clock answered ${r.status}`);
  return (await r.json()).now_ms;
}
