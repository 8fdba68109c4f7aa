// The original streaming server's browser client, unchanged, against bandsync in a real
// browser (Debian's Chromium, driven by playwright-core; no browser is ever downloaded).
//
//   node tests/browser/seed_client.mjs http://127.0.0.1:PORT
//
// fixtures/seed_client.html is the seed README's "Browser Example" byte for byte, except
// that its Tone.js <script src> is bandsync's /vendor/tone.js instead of unpkg. Its
// EventSource URL stays `http://localhost:3001/stream/owner/repo-name`: Chromium's
// `--host-rules` maps localhost:3001 (host and port) to the test server, and the page is
// opened from its file:// URL, so the stream is a cross-origin request answered through
// bandsync's CORS, as it would be from the original client's own page.
//
// Nothing in the page is changed; an init script wraps Web Audio and EventSource to observe
// what the page's own script does: AudioContext.prototype.createBuffer,
// AudioBuffer.prototype.copyToChannel, AudioBufferSourceNode.prototype.start. After
// `connected`, node POSTs the seed's test body; the page must have created an AudioBuffer of
// 5 × 44100 frames, 44.1 kHz, 2 channels, filled both channels with exactly the server's
// samples, and started a source playing that very buffer in a running AudioContext.
// Exit 0 on success, 1 with a FAIL line; bounded well under 60 s.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium).

import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  baseFromArgs, check, checkShape, compareSamples, launch, log, postTest, readComposition,
  runBounded, spotChecks, waitFor, watch,
} from './repo_stream.mjs';

const base = baseFromArgs('seed_client.mjs');
const problems = [];
const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, 'fixtures', 'seed_client.html');
/** The address the seed client has hard-coded, and the repository it listens to. */
const SEED_ORIGIN = 'http://localhost:3001';
const SEED_REPO = 'owner/repo-name';
/** The seed README's test request. */
const SEED_BODY = { tempo: 120, duration: 5, instrumentType: 'synth' };

/** Runs before the page's scripts: observes, never changes, what they do. */
function instrument() {
  const seen = { messages: [], buffers: [], copies: [], starts: [] };
  window.__seed = seen;

  const NativeEventSource = window.EventSource;
  window.EventSource = class extends NativeEventSource {
    constructor(...args) {
      super(...args);
      seen.url = String(args[0]);
      this.addEventListener('message', (e) => {
        try {
          seen.messages.push(JSON.parse(e.data).type);
        } catch (_) {
          seen.messages.push('unparsable');
        }
      });
    }
  };

  const createBuffer = BaseAudioContext.prototype.createBuffer;
  AudioContext.prototype.createBuffer = function (...args) {
    const buffer = createBuffer.apply(this, args);
    seen.buffers.push(buffer);
    return buffer;
  };
  const copyToChannel = AudioBuffer.prototype.copyToChannel;
  AudioBuffer.prototype.copyToChannel = function (source, channel, ...rest) {
    seen.copies.push({ buffer: seen.buffers.indexOf(this), channel, length: source.length });
    return copyToChannel.call(this, source, channel, ...rest);
  };
  const start = AudioBufferSourceNode.prototype.start;
  AudioBufferSourceNode.prototype.start = function (...args) {
    seen.starts.push({ buffer: seen.buffers.indexOf(this.buffer), state: this.context.state });
    return start.apply(this, args);
  };
}

await runBounded(50_000, 'the seed\'s browser client plays bandsync\'s composition unchanged', problems, async () => {
  const original = readFileSync(fixture, 'utf8');
  check(original.includes(`new EventSource(\`${SEED_ORIGIN}/stream/\${repoId}\`)`)
    && original.includes(`const repoId = '${SEED_REPO}';`), 'the fixture is not the seed\'s client');
  check(original.includes(`<script src="${SEED_ORIGIN}/vendor/tone.js"></script>`),
    'the fixture does not load bandsync\'s /vendor/tone.js');

  const port = new URL(base).port;
  const browser = await launch({ extraArgs: [`--host-rules=MAP localhost:3001 127.0.0.1:${port}`] });
  try {
    const context = await browser.newContext();
    await context.addInitScript(instrument);
    const page = await context.newPage();
    watch('seed', page, problems);
    const tone = page.waitForResponse(`${SEED_ORIGIN}/vendor/tone.js`);
    await page.goto(pathToFileURL(fixture).href, { waitUntil: 'load' });
    const toneResponse = await tone;
    check(toneResponse.status() === 200, `/vendor/tone.js answered ${toneResponse.status()}`);
    check(await page.evaluate(() => typeof Tone !== 'undefined' && Tone.version), 'Tone.js did not load');
    await waitFor(page, 'the seed client\'s `connected`', () => window.__seed.messages.includes('connected'));
    log(`seed: connected to ${await page.evaluate(() => window.__seed.url)} through --host-rules`);

    // A fresh server has no composition for the repository yet: the next one is the POST's.
    const before = await page.evaluate(() => window.__seed.messages);
    check(!before.includes('audio_buffer'), `seed: a composition before the POST (${before})`);
    const answer = await postTest(base, SEED_REPO, SEED_BODY);
    check(answer.listenersNotified >= 1, `seed: ${answer.listenersNotified} listeners notified`);
    await waitFor(page, 'the seed client to start playback',
      (len) => window.__seed.starts.some((s) => s.buffer >= 0 && window.__seed.buffers[s.buffer].length === len),
      Math.round(SEED_BODY.duration * 44100));

    const seen = await page.evaluate(() => {
      const s = window.__seed;
      // The buffer the page's script filled (Tone.js creates and starts tiny ones of its own).
      const index = s.copies.length ? s.copies[s.copies.length - 1].buffer : -1;
      if (index < 0) return null;
      const b = s.buffers[index];
      return {
        messages: s.messages,
        index,
        shape: { length: b.length, sampleRate: b.sampleRate, numberOfChannels: b.numberOfChannels },
        copies: s.copies.filter((c) => c.buffer === index),
        starts: s.starts.filter((st) => st.buffer === index),
      };
    });
    check(seen, 'seed: the page never filled an AudioBuffer');
    check(seen.messages.filter((t) => t === 'audio_buffer').length === 1, `seed: messages ${seen.messages}`);
    checkShape('seed: AudioBuffer', seen.shape, SEED_BODY.duration);
    check(seen.copies.length === 2 && seen.copies.every((c, i) => c.channel === i && c.length === seen.shape.length),
      `seed: copyToChannel calls ${JSON.stringify(seen.copies)}`);
    check(seen.starts.length === 1 && seen.starts[0].state === 'running',
      `seed: source starts ${JSON.stringify(seen.starts)}`);

    const reference = await readComposition(base, SEED_REPO, answer.compositionId);
    const picks = spotChecks(reference);
    const got = await page.evaluate(({ index, picks }) => {
      const b = window.__seed.buffers[index];
      return picks.map(([ch, i]) => b.getChannelData(ch)[i]);
    }, { index: seen.index, picks });
    compareSamples('seed: AudioBuffer', reference, picks, got);
    log('seed: Tone.Player started the buffer in a running AudioContext');
  } finally {
    await browser.close();
  }
  check(problems.length === 0, 'the page reported problems');
});
