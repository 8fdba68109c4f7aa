// The click and the chord sheet of the bandsync page in Chromium (audio allowed headless:
// --autoplay-policy=no-user-gesture-required).
//
//   node tests/browser/click_sheet.mjs http://127.0.0.1:PORT
//
// A leads, B follows (both with the click on), C listens over SSE. Checked, always on values
// the pages computed (server times), never on when node happened to read them:
// 1. A sets a long ChordPro sheet: B and C render it.
// 2. A plays at 120 bpm: for the same beats, A's and B's clicks are heard at server times
//    (each page's audio clock mapped through its own clock estimate) within 2 ms.
// 3. A sets tempo 150 "at next bar": both pages show the pending change; their clicks are
//    500 ms apart before beat N = the bar's first beat, 400 ms after, and beat N's click is
//    at the change's instant, each within 1 ms (in the server times the pages computed, and
//    in those their audio clock will sound them at).
// 4. A seeks to beat 80: B's and C's highlighted line is the one holding the position, the
//    sheet box has scrolled, and the highlight advances as the song plays.
// 5. A pauses at the next bar: B's last click is the beat before it.
// Exit 0 on success, 1 with a FAIL line; bounded to 55 s.

import {
  baseFromArgs, check, launch, log, runBounded, waitFor, watch,
} from './repo_stream.mjs';

const base = baseFromArgs('click_sheet.mjs');
const problems = [];
/** Cross-page agreement of heard click times (the target), ms. */
const AGREEMENT_MS = 2;
/** Interval and instant of a scheduled tempo change, ms of server time. */
const CHANGE_MS = 1;

function sheetText() {
  const lines = ['{title: Long Song}', '{artist: The Testers}', '{time: 4/4}', '{c: count in}'];
  for (let bar = 1; bar <= 60; bar++) {
    if (bar === 9) lines.push('{start_of_chorus}');
    if (bar === 17) lines.push('{end_of_chorus}');
    lines.push(`[G]Line ${bar} of the [C]song, bar ${bar} [D]<b>not bold</b>`);
  }
  return lines.join('\n');
}

async function open(browser, name, query) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  watch(name, page, problems);
  const res = await page.goto(`${base}?${query}`, { waitUntil: 'load' });
  check(res && res.ok(), `${name}: GET the page failed with ${res && res.status()}`);
  return page;
}

const clicksOf = (page) => page.evaluate(() => window.bandsyncDebug.clicks.map((c) => ({
  ...c, heard: window.bandsyncDebug.contextToServer(c.contextTime),
})));

/** Clicks by beat for the beats in [from, to]. */
const byBeat = (clicks, from, to) => new Map(clicks.filter((c) => c.beat >= from && c.beat <= to).map((c) => [c.beat, c]));

async function run() {
  const session = `click-test-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  const browser = await launch();
  try {
    const a = await open(browser, 'A', `session=${session}&name=alice&role=leader&autojoin=1`);
    await waitFor(a, 'A to join as leader', () => window.bandsync.state.role === 'leader');
    const b = await open(browser, 'B', `session=${session}&name=bob&autojoin=1`);
    await waitFor(b, 'B to join as follower', () => window.bandsync.state.role === 'follower');
    const c = await open(browser, 'C', `session=${session}&transport=sse&autojoin=1`);
    await waitFor(c, 'C to listen over SSE', () => window.bandsync.state.connection === 'listening'
      && window.bandsync.state.transport !== null);
    log('A leads, B follows, C listens over SSE');

    // --- 1. the sheet reaches every page ------------------------------------------------
    await a.locator('details.sheet-editor summary').click();
    await a.fill('#sheet-input', sheetText());
    await a.click('#set-sheet');
    for (const [name, page] of [['A', a], ['B', b], ['C', c]]) {
      await waitFor(page, `${name} to render the 60 lines of the sheet`,
        () => document.querySelectorAll('#sheet-lines .sheet-line.lyrics').length === 60);
    }
    const title = await c.textContent('#sheet-header .sheet-title');
    check(title === 'Long Song', `C: sheet title ${JSON.stringify(title)}`);
    check(await b.inputValue('#sheet-input') === sheetText(), 'B: the sheet editor should hold the session\'s sheet');
    const bold = await b.evaluate(() => document.querySelectorAll('#sheet-lines b').length);
    check(bold === 0, 'B: the sheet\'s markup must stay text');
    log('B and C render the sheet (title, 60 timed lines, markup kept as text)');

    // --- 2. clicks agree across pages ---------------------------------------------------
    for (const [name, page] of [['A', a], ['B', b]]) {
      await page.click('#click-toggle');
      await waitFor(page, `${name}'s AudioContext to run`, () => window.bandsyncDebug.audioState() === 'running');
    }
    await a.fill('#tempo-input', '120');
    await a.click('#set-tempo');
    await a.click('#play');
    for (const [name, page] of [['A', a], ['B', b]]) {
      await waitFor(page, `${name} to schedule 6 clicks`, () => window.bandsyncDebug.clicks.length >= 6);
    }
    const [ca, cb] = [await clicksOf(a), await clicksOf(b)];
    const mb = byBeat(cb, -Infinity, Infinity);
    const diffs = [];
    for (const x of ca) {
      const y = mb.get(x.beat);
      // The same beat of the same transport (each page re-anchors on the ticks it got, which
      // moves the arithmetic by rounding only).
      if (!y || Math.abs(x.serverTime - y.serverTime) > 0.01) continue;
      diffs.push(Math.abs(x.heard - y.heard));
      check(Math.abs(x.heard - x.serverTime) < AGREEMENT_MS && Math.abs(y.heard - y.serverTime) < AGREEMENT_MS,
        `beat ${x.beat}: heard at ${(x.heard - x.serverTime).toFixed(2)} ms (A), ${(y.heard - y.serverTime).toFixed(2)} ms (B) from its time`);
    }
    check(diffs.length >= 4, `A and B share only ${diffs.length} clicks: A ${JSON.stringify(ca)} B ${JSON.stringify(cb)}`);
    const worst = Math.max(...diffs);
    check(worst <= AGREEMENT_MS, `A's and B's clicks are heard up to ${worst.toFixed(3)} ms apart (limit ${AGREEMENT_MS})`);
    const latency = await b.evaluate(() => window.bandsyncDebug.reportedLatencyMs());
    for (const [name, page] of [['A', a], ['B', b]]) {
      const clock = await page.evaluate(() => window.bandsync.state.clock);
      log(`${name}: clock offset ${clock.offset.toFixed(3)} ms ± ${clock.error.toFixed(3)} (rtt ${clock.rtt.toFixed(3)} ms)`);
    }
    log(`${diffs.length} common clicks heard within ${worst.toFixed(3)} ms of each other (B reports ${latency.toFixed(1)} ms output latency)`);

    // --- 3. a tempo change at the next bar ----------------------------------------------
    await a.check('#at-next-bar');
    await a.fill('#tempo-input', '150');
    await a.click('#set-tempo');
    const pending = {};
    for (const [name, page] of [['A', a], ['B', b], ['C', c]]) {
      await waitFor(page, `${name} to hold the scheduled change`, () => window.bandsync.state.scheduled !== null);
      pending[name] = await page.evaluate(() => window.bandsync.state.scheduled);
    }
    const sc = pending.A;
    check(pending.B.at === sc.at && pending.C.at === sc.at, `pages disagree on the instant: ${JSON.stringify(pending)}`);
    const n = sc.transport.beat;
    check(Math.abs(n - Math.round(n)) < 1e-6 && Math.round(n) % 4 === 0, `the change is not on a bar: beat ${n}`);
    const beatN = Math.round(n);
    const shown = await b.textContent('#pending');
    check(shown.startsWith(`tempo 150 at bar ${beatN / 4 + 1}`), `B's pending change reads ${JSON.stringify(shown)}`);
    log(`pending on B: "${shown}"`);
    await a.uncheck('#at-next-bar');
    for (const [name, page] of [['A', a], ['B', b]]) {
      await waitFor(page, `${name} to schedule the clicks up to beat ${beatN + 3}`,
        (last) => window.bandsyncDebug.clicks.some((k) => k.beat >= last), beatN + 3, 8_000);
      const got = byBeat(await clicksOf(page), beatN - 3, beatN + 3);
      for (let k = beatN - 3; k <= beatN + 3; k++) check(got.has(k), `${name}: no click for beat ${k}`);
      const at = got.get(beatN).serverTime;
      check(Math.abs(at - sc.at) <= CHANGE_MS, `${name}: beat ${beatN} clicks ${(at - sc.at).toFixed(3)} ms from the change`);
      const gaps = [];
      for (let k = beatN - 3; k < beatN + 3; k++) gaps.push(got.get(k + 1).serverTime - got.get(k).serverTime);
      gaps.forEach((g, i) => {
        const want = i < 3 ? 500 : 400;
        check(Math.abs(g - want) <= CHANGE_MS, `${name}: interval ${i - 3} around beat ${beatN} is ${g.toFixed(3)} ms, want ${want}: ${gaps}`);
      });
      const heardGaps = [];
      for (let k = beatN - 3; k < beatN + 3; k++) heardGaps.push(got.get(k + 1).heard - got.get(k).heard);
      // The same through the audio clock: what the page handed to Web Audio, mapped back.
      heardGaps.forEach((g, i) => {
        const want = i < 3 ? 500 : 400;
        check(Math.abs(g - want) <= CHANGE_MS, `${name}: heard interval ${i - 3} around beat ${beatN} is ${g.toFixed(3)} ms, want ${want}: ${heardGaps}`);
      });
      log(`${name}: intervals ${gaps.map((g) => g.toFixed(2)).join(', ')} ms (heard ${heardGaps.map((g) => g.toFixed(2)).join(', ')}); beat ${beatN} at the change ${(at - sc.at).toFixed(3)} ms`);
    }

    // --- 4. the sheet follows the position ----------------------------------------------
    const scrollOf = (page) => page.evaluate(() => document.querySelector('#sheet-box').scrollTop);
    const before = { B: await scrollOf(b), C: await scrollOf(c) };
    await a.fill('#seek-input', '80');
    await a.click('#seek');
    // All read in one evaluate, between two frames: the line the last frame highlighted for
    // the position it drew.
    const lineOf = (page) => page.evaluate(() => {
      const i = window.bandsyncDebug.currentLine();
      const node = document.querySelector('#sheet-lines .sheet-line.current');
      return {
        i, pos: window.bandsync.state.position, line: window.bandsyncDebug.sheetLines()[i],
        scrollTop: document.querySelector('#sheet-box').scrollTop, text: node && node.textContent,
      };
    });
    for (const [name, page] of [['B', b], ['C', c]]) {
      await waitFor(page, `${name} to highlight the line at beat 80 or after`, () => {
        const i = window.bandsyncDebug.currentLine();
        return i >= 0 && window.bandsyncDebug.sheetLines()[i].startBeat >= 80;
      });
      const first = await lineOf(page);
      check(first.line.startBeat <= first.pos && first.pos < first.line.endBeat,
        `${name}: line [${first.line.startBeat}, ${first.line.endBeat}) highlighted at beat ${first.pos}`);
      check(first.scrollTop > before[name], `${name}: the sheet did not scroll (${before[name]} -> ${first.scrollTop})`);
      await waitFor(page, `${name}'s highlight to advance`, (i) => window.bandsyncDebug.currentLine() > i, first.i, 6_000);
      const next = await lineOf(page);
      check(next.line.startBeat <= next.pos && next.pos < next.line.endBeat,
        `${name}: line [${next.line.startBeat}, ${next.line.endBeat}) highlighted at beat ${next.pos}`);
      check(next.scrollTop >= first.scrollTop, `${name}: scrolled back (${first.scrollTop} -> ${next.scrollTop})`);
      log(`${name}: "${first.text.trim()}" at beat ${first.pos.toFixed(2)}, then "${next.text.trim()}"; scrollTop ${before[name]} -> ${first.scrollTop} -> ${next.scrollTop}`);
    }

    // --- 5. a pause at the next bar: the clicks stop on it --------------------------------
    await a.check('#at-next-bar');
    await a.click('#pause');
    await waitFor(b, 'B to hold the scheduled pause', () => window.bandsync.state.scheduled?.action === 'pause');
    const pause = await b.evaluate(() => window.bandsync.state.scheduled);
    const lastBeat = Math.round(pause.transport.beat) - 1;
    await waitFor(b, 'B to pass the pause', (at) => performance.timeOrigin + performance.now()
      + window.bandsync.state.clock.offset > at + 600, pause.at, 8_000);
    const clicks = await clicksOf(b);
    const late = clicks.filter((k) => k.serverTime >= pause.at);
    check(late.length === 0, `B: clicks at or after the pause: ${JSON.stringify(late)}`);
    check(clicks.some((k) => k.beat === lastBeat), `B: no click for beat ${lastBeat}, the last before the pause`);
    log(`a pause at beat ${lastBeat + 1}: B's last click is beat ${lastBeat}`);

    check(problems.length === 0, `problems in the pages:\n  ${problems.join('\n  ')}`);
  } finally {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5_000))]);
  }
}

await runBounded(55_000, 'the click agrees across pages, follows a scheduled tempo change and the sheet scrolls', problems, run);
