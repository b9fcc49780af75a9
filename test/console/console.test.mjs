// The web console in a real headless Chromium (Debian's), against the
// all-in-one binary built from this repository: the numbers shown match
// /stats after a known publish, paging walks every event once, a wrong API
// key gets a clear message, and the page logs no errors.
//
// Run by scripts/test.sh; alone: scripts/deps/chromium.sh up && (cd test/console && npm test).
// AGGREGATOR_CONSOLE_SCREENSHOTS=<dir> also saves desktop and phone screenshots there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const CHROMIUM = process.env.AGGREGATOR_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.AGGREGATOR_CONSOLE_SCREENSHOTS || '';
const KEY = 'console-test-key-0123456789';
const WAIT = { timeout: 30_000 };

let work, binary, browser;
const servers = [];

before(async () => {
  // A missing browser fails the suite: it never skips.
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run scripts/deps/chromium.sh up`);
  work = mkdtempSync(path.join(tmpdir(), 'console-test-'));
  binary = path.join(work, 'aggregator');
  execFileSync('go', ['build', '-o', binary, './services/aggregator'], { cwd: repo, stdio: 'inherit' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives each launch a fresh --user-data-dir of its own.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await Promise.all(servers.map(stop));
  if (work) rmSync(work, { recursive: true, force: true });
});

// start runs the all-in-one on a free port and resolves with its URL once it
// logs that it listens.
function start(name, env = {}) {
  const dir = path.join(work, name);
  const proc = spawn(binary, ['--addr', '127.0.0.1:0', '--data-dir', dir, '--log-format', 'json'], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  const server = { proc, log: [] };
  servers.push(server);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not listen:\n${server.log.join('\n')}`)), 60_000);
    proc.on('exit', (code) => reject(new Error(`${name} exited ${code}:\n${server.log.join('\n')}`)));
    readline.createInterface({ input: proc.stderr }).on('line', (line) => {
      server.log.push(line);
      let rec;
      try { rec = JSON.parse(line); } catch { return; }
      if (rec.msg === 'listening') {
        clearTimeout(timer);
        server.url = `http://${rec.addr}`;
        resolve(server);
      }
    });
  });
}

function stop(server) {
  if (server.proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    server.proc.once('exit', resolve);
    server.proc.kill('SIGTERM');
  });
}

async function call(server, method, p, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = 'Bearer ' + key;
  const res = await fetch(server.url + p, { method, headers, body: body && JSON.stringify(body) });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${p}: ${res.status} ${text}`);
  return JSON.parse(text);
}

function ev(topic, id, payload) {
  return { topic, event_id: id, timestamp: '2026-11-25T10:00:00Z', source: 'console-test', payload };
}

// The known publish: 40 orders and 13 clicks, then 21 copies sent again.
const ORDERS = Array.from({ length: 40 }, (_, i) => ev('orders', `o-${i}`, { n: i, note: '<b>&</b>' }));
const CLICKS = Array.from({ length: 13 }, (_, i) => ev('clicks', `c-${i}`, { n: i }));
const AGAIN = [...ORDERS.slice(0, 15), ...CLICKS.slice(0, 6)];

// watch collects what the page logs as errors, and uncaught exceptions.
function watch(page) {
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push('uncaught: ' + e.message));
  return errors;
}

const digits = (s) => Number(s.replace(/[^0-9]/g, ''));

async function shown(page) {
  return page.evaluate(() => {
    const t = (id) => document.getElementById(id).textContent;
    const rows = Array.from(document.querySelectorAll('#topics tbody tr')).map((tr) =>
      Array.from(tr.children).map((c) => c.textContent));
    return { received: t('received'), unique: t('unique'), duplicates: t('duplicates'), ratio: t('ratio'), rows };
  });
}

// walk clicks "Next page" until there is none, and returns the ids of every
// page in order.
async function walk(page, topic, size) {
  await page.selectOption('#topic-filter', topic);
  await page.selectOption('#page-size', String(size));
  await page.click('#events-form button[type=submit]');
  const ids = [];
  for (let n = 1; ; n++) {
    assert.ok(n <= 50, 'more than 50 pages: the paging does not move on');
    await page.waitForFunction((n) => document.getElementById('events-status').textContent.startsWith(`Page ${n} `), n, WAIT);
    const got = await page.$$eval('#events tbody tr', (trs) => trs.map((tr) => `${tr.dataset.topic}/${tr.dataset.eventId}`));
    assert.ok(got.length <= size, `page ${n} holds ${got.length} > ${size}`);
    ids.push(...got);
    if (await page.isDisabled('#next-page')) break;
    await page.click('#next-page');
  }
  return ids;
}

test('the console shows what /stats says, pages every event once, and logs no errors', async () => {
  const server = await start('open');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = watch(page);
  await page.goto(server.url + '/');
  await page.waitForFunction(() => document.getElementById('received').dataset.value === '0', null, WAIT);
  // A new data directory gets the default engine.
  assert.equal(await page.textContent('#mode'), 'All-in-one (Pebble)');

  await call(server, 'POST', '/publish', [...ORDERS, ...CLICKS]);
  await call(server, 'POST', '/publish', AGAIN);
  const received = ORDERS.length + CLICKS.length + AGAIN.length;
  await page.waitForFunction((n) => document.getElementById('received').dataset.value === String(n), received, WAIT);

  const stats = await call(server, 'GET', '/stats');
  const topics = (await call(server, 'GET', '/topics')).topics;
  assert.equal(stats.received, received);
  assert.equal(stats.duplicate_dropped, AGAIN.length);
  const s = await shown(page);
  assert.equal(digits(s.received), stats.received);
  assert.equal(digits(s.unique), stats.unique_processed);
  assert.equal(digits(s.duplicates), stats.duplicate_dropped);
  assert.equal(s.ratio, `${(100 * stats.duplicate_dropped / stats.received).toFixed(1)}%`);
  // The live region speaks the counters (once at most every 15 s).
  assert.match(await page.textContent('#counters-live'), /^\d[\d,]* received, \d[\d,]* unique, \d[\d,]* duplicates\.$/);
  assert.deepEqual(s.rows.map((r) => [r[0], digits(r[1]), digits(r[2]), digits(r[3])]),
    topics.map((c) => [c.topic, c.received, c.unique_processed, c.duplicate_dropped]));

  // The store facts of /console/info.
  const info = await call(server, 'GET', '/console/info');
  assert.equal(info.retention, 'forever');
  assert.match(await page.textContent('#retention'), /Forever/);
  assert.match(await page.textContent('#dedup-window'), /Forever/);
  await page.waitForFunction(() => Number(document.getElementById('store-size').dataset.value) > 0, null, WAIT);

  // Every event once, in pages of 10, then one topic alone.
  const all = await walk(page, '', 10);
  const want = [...ORDERS, ...CLICKS].map((e) => `${e.topic}/${e.event_id}`);
  assert.equal(new Set(all).size, all.length, 'an event was shown twice');
  assert.deepEqual([...all].sort(), [...want].sort());
  const clicks = await walk(page, 'clicks', 10);
  assert.deepEqual(clicks, CLICKS.map((e) => `clicks/${e.event_id}`));

  // An event's full JSON, opened and closed with the keyboard.
  await page.click('#first-page');
  await page.waitForFunction(() => document.getElementById('events-status').textContent.startsWith('Page 1 '), null, WAIT);
  const button = page.locator('#events tbody tr').first().locator('button');
  await button.focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#event-detail:not([hidden])', WAIT);
  const shownEvent = JSON.parse(await page.textContent('#event-json'));
  assert.equal(shownEvent.event_id, CLICKS[0].event_id);
  assert.deepEqual(shownEvent.payload, CLICKS[0].payload);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'event-detail');
  await page.keyboard.press('Escape');
  assert.ok(await page.isHidden('#event-detail'));
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'BUTTON');

  // Rates appear once two samples are apart, and the chart has its lines.
  await call(server, 'POST', '/publish', [ev('clicks', 'late-1', {}), ev('clicks', 'late-1', {})]);
  await page.waitForFunction((n) => document.getElementById('received').dataset.value === String(n), received + 2, WAIT);
  assert.equal(await page.locator('#chart polyline').count(), 2);
  assert.match(await page.textContent('#chart-desc'), /events\/s/);

  if (SHOTS) {
    await page.click('#close-detail').catch(() => {});
    await page.screenshot({ path: path.join(SHOTS, 'console-desktop.png'), fullPage: true });
  }
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('the console is readable on a phone', async () => {
  const server = servers.find((s) => s.url && s.proc.exitCode === null);
  assert.ok(server, 'the first test left no server');
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await ctx.newPage();
  const errors = watch(page);
  await page.goto(server.url + '/');
  await page.waitForFunction(() => Number(document.getElementById('received').dataset.value) > 0, null, WAIT);
  await page.waitForFunction(() => document.getElementById('events-status').textContent.startsWith('Page 1 '), null, WAIT);
  assert.equal(await page.evaluate(() => document.activeElement === document.body), true, 'focus moved by itself');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'console-phone.png') });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('with API keys the console asks for one, says clearly when it is wrong, and keeps it for the tab only', async () => {
  const server = await start('keys', { AGGREGATOR_API_KEYS: KEY });
  await call(server, 'POST', '/publish', CLICKS.slice(0, 3), KEY);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = watch(page);
  await page.goto(server.url + '/');
  await page.waitForSelector('#key-form:not([hidden])', WAIT);
  assert.match(await page.textContent('#message'), /needs an API key/);
  assert.equal(await page.getAttribute('#message', 'role'), 'alert');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key-input');

  await page.fill('#key-input', 'not-the-key-0000000');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /refused/.test(document.getElementById('message').textContent), null, WAIT);
  assert.match(await page.textContent('#message'), /API key was refused \(401 Unauthorized/);
  assert.ok(await page.isVisible('#key-form'));
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  await page.fill('#key-input', KEY);
  await page.click('#key-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('received').dataset.value === '3', null, WAIT);
  assert.ok(await page.isHidden('#message'));
  assert.ok(await page.isHidden('#key-form'));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('aggregator.apiKey')), KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await ctx.cookies().then((c) => c.length), 0);

  // Chromium itself logs each refused request; nothing else may be logged.
  const others = errors.filter((e) => !/Failed to load resource: the server responded with a status of 401/.test(e));
  assert.deepEqual(others, []);
  await ctx.close();
});
