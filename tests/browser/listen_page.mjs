// The listening page (`/listen/{owner}/{name}`) in a real browser (Debian's Chromium, driven
// by playwright-core; no browser is ever downloaded).
//
//   node tests/browser/listen_page.mjs http://127.0.0.1:PORT
//
// 1. Live: the page connects, node POSTs a test composition, and the page must hold an
//    AudioBuffer of duration × 44100 frames, 44.1 kHz, 2 channels, whose samples equal what
//    the server sent (read by node from the same stream in the default JSON encoding, while
//    the page asked for f32), start playing it on its own (autoplay allowed), and show why
//    and what it played. Then the page's own test form posts a second one, which plays.
// 2. Late listener: node POSTs first, then the page opens; it still gets and plays that
//    composition. Its owner (`layers`) is a Stream Manager word, reached percent-encoded.
// 3. Autoplay locked (Chromium's user-gesture policy): the composition arrives and waits;
//    "Start audio" (a real click) plays it.
// Any CSP violation, uncaught exception or failed request fails the run. Exit 0 on
// success, 1 with a FAIL line; bounded well under 60 s.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium).

import {
  baseFromArgs, check, checkShape, compareSamples, launch, log, postTest, readComposition,
  runBounded, spotChecks, waitFor, watch,
} from './repo_stream.mjs';

const base = baseFromArgs('listen_page.mjs');
const problems = [];

/** Opens the page of `repo` in a fresh context; counts native source starts for the checks. */
async function openPage(browser, name, repo) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.addInitScript(() => {
    window.__sourceStarts = 0;
    const start = AudioBufferSourceNode.prototype.start;
    AudioBufferSourceNode.prototype.start = function (...args) {
      // Tone.js starts sources of its own (a silent keep-alive); count only real compositions.
      if (this.buffer && this.buffer.length > 1000) window.__sourceStarts += 1;
      return start.apply(this, args);
    };
  });
  const page = await context.newPage();
  watch(name, page, problems);
  const res = await page.goto(`${base}/listen/${repo}`, { waitUntil: 'load' });
  check(res && res.status() === 200, `${name}: GET /listen/${repo} answered ${res && res.status()}`);
  await waitFor(page, `${name}: connected`, () => window.bandsyncListen && window.bandsyncListen.connected);
  log(`${name}: connected to /stream/${repo}`);
  return page;
}

const listenState = (page) => page.evaluate(() => {
  const s = window.bandsyncListen;
  return {
    compositions: s.compositions,
    started: s.started,
    errors: s.errors,
    loaded: s.loaded(),
    sourceStarts: window.__sourceStarts,
    audio: Tone.getContext().state,
    startButtonHidden: document.getElementById('start-audio').hidden,
  };
});

/** Waits for `compositionId` on the page, then checks shape, samples and the shown details. */
async function checkReceived(page, name, repo, answer, body, { playing }) {
  await waitFor(page, `${name}: composition ${answer.compositionId}`,
    (id) => window.bandsyncListen.compositions.some((c) => c.compositionId === id), answer.compositionId);
  if (playing) await waitFor(page, `${name}: playback started`, () => window.bandsyncListen.started >= 1);
  const st = await listenState(page);
  check(st.errors.length === 0, `${name}: page errors ${st.errors.join('; ')}`);
  const entry = st.compositions.find((c) => c.compositionId === answer.compositionId);
  checkShape(`${name}: listed composition`, entry, body.duration);
  checkShape(`${name}: buffer in the player`, st.loaded, body.duration);

  const reference = await readComposition(base, repo, answer.compositionId);
  const picks = spotChecks(reference);
  const got = await page.evaluate((p) => p.map(([ch, i]) => window.bandsyncListen.samples(ch, [i])[0]), picks);
  compareSamples(`${name}: player buffer`, reference, picks, got);

  const shown = await page.evaluate(() => Object.fromEntries(
    ['tempo', 'instrument', 'duration', 'trigger', 'composition-id', 'summary', 'status']
      .map((id) => [id, document.getElementById(id).textContent]),
  ));
  check(shown.tempo === `${body.tempo} bpm`, `${name}: shows tempo ${shown.tempo}`);
  check(shown.instrument === body.instrumentType, `${name}: shows instrument ${shown.instrument}`);
  check(shown['composition-id'] === answer.compositionId, `${name}: shows ${shown['composition-id']}`);
  check(shown.trigger === 'test request', `${name}: shows trigger ${shown.trigger}`);
  check(shown.summary.length > 0 && shown.summary === (reference.trigger && reference.trigger.summary),
    `${name}: shows summary ${JSON.stringify(shown.summary)}, sent ${JSON.stringify(reference.trigger && reference.trigger.summary)}`);
  check(shown.status === 'connected', `${name}: status ${shown.status}`);
  return st;
}

async function live(browser) {
  const repo = 'octo-org/live-band';
  const page = await openPage(browser, 'live', repo);
  const body = { tempo: 96, duration: 3, instrumentType: 'fm', scale: ['A3', 'C4', 'E4'], pattern: 'ascending' };
  const answer = await postTest(base, repo, body);
  check(answer.listenersNotified >= 1, `live: ${answer.listenersNotified} listeners notified`);
  const st = await checkReceived(page, 'live', repo, answer, body, { playing: true });
  check(st.audio === 'running', `live: AudioContext ${st.audio}`);
  check(st.started === 1 && st.sourceStarts >= 1, `live: started ${st.started}, native starts ${st.sourceStarts}`);
  log(`live: playing (Tone context ${st.audio}, ${st.sourceStarts} native source start(s))`);

  // The page's own form posts the next one; it replaces the first in the player.
  await page.fill('#t-tempo', '150');
  await page.fill('#t-duration', '1.5');
  await page.selectOption('#t-instrument', 'metal');
  await page.click('#t-send');
  await waitFor(page, 'live: the form\'s composition playing',
    () => window.bandsyncListen.compositions.length === 2 && window.bandsyncListen.started === 2);
  const after = await listenState(page);
  checkShape('live: the form\'s composition', after.loaded, 1.5);
  const result = await page.evaluate(() => document.getElementById('test-result').textContent);
  check(/1 listener\(s\) notified/.test(result), `live: form result ${JSON.stringify(result)}`);
  check(await page.evaluate(() => document.getElementById('instrument').textContent) === 'metal',
    'live: the form\'s composition is not shown');
  log(`live: the form posted and played a second composition (${result})`);
  await page.context().close();
}

async function late(browser) {
  // An owner named like a Stream Manager route (`/stream/layers/...`): the page must address
  // it percent-encoded to reach the repository.
  const repo = 'layers/late-band';
  const body = { tempo: 140, duration: 2, instrumentType: 'pluck', density: 0.75 };
  const answer = await postTest(base, repo, body);
  const page = await openPage(browser, 'late', repo);
  const st = await checkReceived(page, 'late', repo, answer, body, { playing: true });
  check(st.compositions.length === 1, `late: ${st.compositions.length} compositions`);
  const url = await page.evaluate(() => document.getElementById('stream-url').textContent);
  check(url === '/stream/%6Cayers/late-band?encoding=f32', `late: stream URL ${url}`);
  check(st.started === 1 && st.sourceStarts >= 1, `late: started ${st.started}, native starts ${st.sourceStarts}`);
  log('late: the latest composition arrived on connect and plays');
  await page.context().close();
}

async function locked() {
  const browser = await launch({ autoplay: false });
  try {
    const repo = 'locked-band';
    const page = await openPage(browser, 'locked', repo);
    const body = { tempo: 120, duration: 1, instrumentType: 'synth' };
    const answer = await postTest(base, repo, body);
    let st = await checkReceived(page, 'locked', repo, answer, body, { playing: false });
    check(st.audio !== 'running', `locked: AudioContext already ${st.audio} without a gesture`);
    check(st.started === 0 && st.sourceStarts === 0, `locked: played without a gesture (${st.started})`);
    check(!st.startButtonHidden, 'locked: no "Start audio" button');
    await page.click('#start-audio');
    await waitFor(page, 'locked: playback after "Start audio"', () => window.bandsyncListen.started >= 1);
    st = await listenState(page);
    check(st.audio === 'running' && st.sourceStarts >= 1 && st.startButtonHidden,
      `locked: after the click: ${JSON.stringify({ audio: st.audio, sourceStarts: st.sourceStarts, hidden: st.startButtonHidden })}`);
    log('locked: waited for the gesture, then played');
  } finally {
    await browser.close();
  }
}

await runBounded(55_000, 'the listening page plays live and late compositions, sample for sample', problems, async () => {
  const browser = await launch();
  try {
    await live(browser);
    await late(browser);
  } finally {
    await browser.close();
  }
  await locked();
  check(problems.length === 0, 'the pages reported problems');
});
