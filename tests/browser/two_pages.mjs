// End-to-end check of the bandsync page in a real browser (Debian's Chromium, driven by
// playwright-core; no browser is ever downloaded).
//
//   node tests/browser/two_pages.mjs http://127.0.0.1:PORT
//
// Page A joins as leader and page B as follower of one fresh session; page C follows it as an
// SSE listener (`?transport=sse`). A sets the tempo and plays, pauses, seeks and sends a
// message; B and C must show each change. Each page runs in its own browser context (its
// own client, as three band members would be). A screenshot of B goes to
// target/browser-follower.png. Exit 0 on success, 1 with a FAIL line on failure; the whole
// run is bounded well under 60 s.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), BANDSYNC_SCREENSHOT (png path).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TOTAL_BUDGET_MS = 55_000;
const STEP_TIMEOUT_MS = 8_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const screenshotPath = process.env.BANDSYNC_SCREENSHOT
  || path.join(repoRoot, 'target', 'browser-follower.png');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class CheckFailed extends Error {}
function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

const baseArg = process.argv[2];
if (!baseArg) {
  console.error('usage: node two_pages.mjs <base-url>   (e.g. http://127.0.0.1:3101)');
  process.exit(2);
}
const base = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;

// A hard stop in case something hangs where no Playwright timeout reaches.
const watchdog = setTimeout(() => {
  console.error(`FAIL: browser test exceeded its ${TOTAL_BUDGET_MS / 1000} s budget`);
  process.exit(3);
}, TOTAL_BUDGET_MS);
watchdog.unref();

const pages = {};
/** Problems seen by any page: CSP violations, uncaught exceptions, failed loads. */
const pageProblems = [];

function watch(name, page) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content[- ]Security[- ]Policy/i.test(text)) pageProblems.push(`${name}: CSP violation: ${text}`);
    else if (msg.type() === 'error') log(`${name} console error: ${text}`);
  });
  page.on('pageerror', (err) => pageProblems.push(`${name}: uncaught exception: ${err.message}`));
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (['/', '/app.js', '/style.css'].includes(url.pathname) && res.status() !== 200) {
      pageProblems.push(`${name}: GET ${url.pathname} answered ${res.status()}`);
    }
  });
}

async function open(browser, name, query) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watch(name, page);
  pages[name] = page;
  const res = await page.goto(`${base}?${query}`, { waitUntil: 'load' });
  check(res && res.ok(), `${name}: GET ${base} failed with ${res && res.status()}`);
  return page;
}

/** Waits until `fn(arg)` is truthy in the page; on timeout fails with `what`. */
async function waitFor(page, what, fn, arg, timeout = STEP_TIMEOUT_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    throw new CheckFailed(`timed out after ${timeout} ms waiting for ${what}`);
  }
}

const text = (page, sel) => page.locator(sel).textContent();
const beatOf = async (page) => Number(await text(page, '#beat'));

async function join(page, name, { session, user, role }) {
  await page.fill('#session', session);
  if (user !== undefined) await page.fill('#name', user);
  if (role !== undefined) await page.selectOption('#role', role);
  await page.click('#join');
}

/**
 * Collects [pageTimeMs, #beat] once per animation frame for `totalMs` of page time. The
 * callback is registered after the page's own draw callback, so within a frame it runs
 * right after #beat was drawn.
 */
function drawnBeats(page, totalMs) {
  return page.evaluate((total) => new Promise((resolve) => {
    const out = [];
    const start = performance.now();
    const sample = () => {
      const now = performance.now();
      out.push([now - start, Number(document.querySelector('#beat').textContent)]);
      if (now - start >= total) resolve(out);
      else requestAnimationFrame(sample);
    };
    requestAnimationFrame(sample);
  }), totalMs);
}

/** The page's position model at its estimated server time, and the wall clock it used. */
function positionNow(page) {
  return page.evaluate(() => {
    const s = window.bandsync.state;
    const at = performance.timeOrigin + performance.now();
    const tr = s.transport;
    const beat = tr.beat + (tr.playing ? (at + s.clock.offset - tr.anchorTime) * tr.tempo / 60000 : 0);
    return { at, beat };
  });
}

async function main() {
  const session = `browser-test-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  log(`launching ${chromiumPath}`);
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20_000,
  });
  try {
    await run(browser, session);
  } catch (e) {
    // Say what each page believed while the browser is still there to ask.
    reportFailure(e);
    await dumpPages();
    throw e;
  } finally {
    await Promise.race([browser.close(), sleep(5_000)]);
  }
}

async function run(browser, session) {
  // --- A: leader -----------------------------------------------------------------------
  const a = await open(browser, 'A', `session=${encodeURIComponent(session)}`);
  await join(a, 'A', { session, user: 'alice', role: 'leader' });
  await waitFor(a, 'A to join as leader',
    () => window.bandsync.state.connection === 'joined' && window.bandsync.state.role === 'leader');
  check(await text(a, '#transport-kind') === 'websocket', 'A: #transport-kind should be "websocket"');
  check(!(await a.isDisabled('#play')), 'A: #play should be enabled for the leader');
  const leaderId = await a.evaluate(() => window.bandsync.state.clientId);
  check(leaderId, 'A: no clientId after joining');
  log(`A joined ${session} as leader ${leaderId}`);

  // --- B: follower ---------------------------------------------------------------------
  const b = await open(browser, 'B', `session=${encodeURIComponent(session)}`);
  await join(b, 'B', { session, user: 'bob', role: 'follower' });
  await waitFor(b, 'B to join as follower',
    () => window.bandsync.state.connection === 'joined' && window.bandsync.state.role === 'follower');
  await waitFor(b, `B to show leader ${leaderId}`, (id) => document.querySelector('#leader').textContent.startsWith(id), leaderId);
  for (const sel of ['#play', '#pause', '#set-tempo', '#seek']) {
    check(await b.isDisabled(sel), `B: ${sel} should be disabled for a follower`);
  }
  check(!(await b.isDisabled('#send-message')), 'B: any member may post the message');
  log('B joined as follower; its leader controls are disabled, the message box is not');

  // --- C: SSE listener ------------------------------------------------------------------
  const c = await open(browser, 'C', `session=${encodeURIComponent(session)}&transport=sse`);
  await c.click('#join');
  await waitFor(c, 'C to listen over SSE',
    () => window.bandsync.state.connection === 'listening' && window.bandsync.state.transportKind === 'sse'
      && window.bandsync.state.transport !== null);
  check(await text(c, '#transport-kind') === 'sse', 'C: #transport-kind should be "sse"');
  check(await c.isVisible('#sse-badge'), 'C: the "listening over SSE" badge should be visible');
  check(await c.isDisabled('#play'), 'C: controls should be disabled for an SSE listener');
  log('C listens over SSE');

  await waitFor(a, 'A to count 2 members and 1 listener (room_stats)', () => {
    const s = window.bandsync.state.stats;
    return s && s.members === 2 && s.listeners === 1;
  });
  log(`A shows members: ${await text(a, '#members')}`);

  // --- tempo and play --------------------------------------------------------------------
  await a.fill('#tempo-input', '150');
  await a.click('#set-tempo');
  await waitFor(b, 'B to show tempo 150', () => document.querySelector('#tempo').textContent === '150');
  await waitFor(c, 'C to show tempo 150', () => document.querySelector('#tempo').textContent === '150');
  log('B and C show tempo 150');

  await a.click('#play');
  for (const [name, page] of [['B', b], ['C', c]]) {
    await waitFor(page, `${name} to see the transport playing`, () => window.bandsync.state.transport?.playing === true);
  }
  // Every page is at the leader's version, playing at tempo 150. (Not the same transport
  // object: each page re-anchors it on the ticks it receives.)
  const leaderVersion = await a.evaluate(() => window.bandsync.state.version);
  for (const [name, page] of [['B', b], ['C', c]]) {
    await waitFor(page, `${name} to be at version ${leaderVersion}, playing at 150`,
      (v) => window.bandsync.state.version === v && window.bandsync.state.transport?.playing === true
        && window.bandsync.state.transport.tempo === 150, leaderVersion);
  }
  // #beat moves, at the tempo. Sampled inside each page, once per animation frame right
  // after the page drew it, with the page's own clock: a busy machine may delay frames and
  // the test's reads (per-100 ms samples from node used to flake), but cannot skew these
  // pairs, which say what was drawn when.
  const moving = Object.fromEntries(await Promise.all(
    [['B', b], ['C', c]].map(async ([name, page]) => [name, await drawnBeats(page, 1_000)])));
  for (const name of ['B', 'C']) {
    const samples = moving[name];
    check(samples.length >= 3, `${name}: only ${samples.length} frames drawn in 1 s: ${JSON.stringify(samples)}`);
    for (let i = 1; i < samples.length; i++) {
      check(samples[i][1] >= samples[i - 1][1],
        `${name}: #beat went back while playing: ${JSON.stringify(samples)}`);
    }
    const [[t0, b0], [t1, b1]] = [samples[0], samples[samples.length - 1]];
    check(b1 > b0, `${name}: #beat did not move while playing: ${JSON.stringify(samples)}`);
    const bpm = ((b1 - b0) / (t1 - t0)) * 60_000;
    // #beat is shown to 2 decimals and the clock estimate may be refined meanwhile; a
    // wrong model (a stale anchor, ms taken for s, the wrong tempo) is far outside this.
    check(bpm > 150 * 0.8 && bpm < 150 * 1.2,
      `${name}: #beat moved at ${bpm.toFixed(1)} bpm, expected about 150: ${JSON.stringify(samples)}`);
    log(`${name}: #beat ${b0.toFixed(2)} -> ${b1.toFixed(2)} in ${(t1 - t0).toFixed(0)} ms (${bpm.toFixed(1)} bpm)`);
  }
  // The same instant shows (nearly) the same position on every page: each page's position
  // at its estimated server time, carried to one common instant at the tempo, so that
  // when each page was asked does not matter; what remains is the clock estimates' error.
  const positions = Object.fromEntries(await Promise.all(
    [['A', a], ['B', b], ['C', c]].map(async ([name, page]) => [name, await positionNow(page)])));
  const common = positions.A.at;
  const at = ({ at: t, beat }) => beat + ((common - t) * 150) / 60_000;
  for (const name of ['B', 'C']) {
    const off = Math.abs(at(positions[name]) - at(positions.A));
    check(off < 0.5, `${name}: position differs from the leader's by ${off.toFixed(3)} beats: ${JSON.stringify(positions)}`);
    log(`${name}: within ${off.toFixed(3)} beats of A at the same instant`);
  }
  check(await text(b, '#tempo') === '150', 'B: #tempo should still show 150');

  // --- pause -----------------------------------------------------------------------------
  await a.click('#pause');
  for (const [name, page] of [['B', b], ['C', c]]) {
    await waitFor(page, `${name} to see the transport paused`, () => window.bandsync.state.transport?.playing === false);
    // #beat is redrawn on the next animation frame: wait until it shows the paused position.
    await waitFor(page, `${name} to draw the paused beat`,
      () => document.querySelector('#beat').textContent === window.bandsync.state.transport.beat.toFixed(2));
  }
  const pausedAt = { B: await beatOf(b), C: await beatOf(c) };
  await sleep(600);
  for (const [name, page] of [['B', b], ['C', c]]) {
    const later = await beatOf(page);
    check(later === pausedAt[name], `${name}: #beat changed while paused: ${pausedAt[name]} -> ${later}`);
  }
  log(`paused: B stays at ${pausedAt.B.toFixed(2)}, C at ${pausedAt.C.toFixed(2)}`);

  // --- seek --------------------------------------------------------------------------------
  await a.fill('#seek-input', '16');
  await a.click('#seek');
  await waitFor(b, 'B to show beat 16.00', () => document.querySelector('#beat').textContent === '16.00');
  await waitFor(c, 'C to show beat 16.00', () => document.querySelector('#beat').textContent === '16.00');
  check(await text(b, '#bar') === '5', 'B: beat 16 should be in bar 5');
  log('B and C show 16.00 after the seek');

  // --- message and the leader seat -----------------------------------------------------------
  const note = 'Chorus twice, then out';
  await a.fill('#message-input', note);
  await a.click('#send-message');
  await waitFor(b, 'B to show the message', (m) => document.querySelector('#message').textContent === m, note);
  await waitFor(c, 'C to show the message', (m) => document.querySelector('#message').textContent === m, note);
  log('B and C show the message');

  await b.click('#take-lead');
  await waitFor(b, 'B to log LEADER_TAKEN', () => document.querySelector('#log').textContent.includes('LEADER_TAKEN'));
  check(await b.evaluate(() => window.bandsync.state.role) === 'follower', 'B: should still be a follower');
  log('B: take lead while A leads -> LEADER_TAKEN shown');

  // --- screenshot --------------------------------------------------------------------------
  mkdirSync(path.dirname(screenshotPath), { recursive: true });
  await b.screenshot({ path: screenshotPath, fullPage: true });
  log(`screenshot of B: ${screenshotPath}`);

  check(pageProblems.length === 0, `problems in the pages:\n  ${pageProblems.join('\n  ')}`);
}

async function dumpPages() {
  for (const [name, page] of Object.entries(pages)) {
    try {
      const s = await Promise.race([
        page.evaluate(() => {
          const st = window.bandsync && window.bandsync.state;
          if (!st) return 'window.bandsync missing';
          return JSON.stringify({
            connection: st.connection, status: st.statusText, kind: st.transportKind,
            clientId: st.clientId, role: st.role, leaderId: st.leaderId, stats: st.stats,
            transport: st.transport, version: st.version, beat: document.querySelector('#beat').textContent,
            clock: { offset: st.clock.offset, rtt: st.clock.rtt, source: st.clock.source },
            log: st.log.map((e) => `${e.level}: ${e.text}`),
          });
        }),
        sleep(2_000).then(() => 'no answer'),
      ]);
      console.error(`  page ${name}: ${s}`);
    } catch (e) {
      console.error(`  page ${name}: could not read state (${e.message})`);
    }
  }
}

let reported = false;
function reportFailure(e) {
  if (reported) return;
  reported = true;
  const msg = e instanceof CheckFailed ? e.message : (e && e.stack) || String(e);
  console.error(`FAIL: ${msg}`);
  if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join('\n  ')}`);
}

try {
  await main();
  log('PASS: leader, follower and SSE listener stay in step');
  process.exit(0);
} catch (e) {
  reportFailure(e);
  process.exit(1);
}
