// What the two listening-page tests (listen_page.mjs, seed_client.mjs) share: a bounded
// run with one verdict line, a Chromium launch that may play audio without a gesture, and
// the server side seen from node: `POST /stream/{repo}/test` and one composition read from
// `GET /stream/{repo}` (the reference the pages' AudioBuffers are compared with).

import { chromium } from 'playwright-core';

export const STEP_TIMEOUT_MS = 10_000;
export const SAMPLE_RATE = 44_100;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const startedAt = Date.now();
export const log = (msg) => console.log(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

export class CheckFailed extends Error {}
export function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

/** The base URL from argv (`http://127.0.0.1:PORT`, no trailing slash); exits 2 without. */
export function baseFromArgs(script) {
  const arg = process.argv[2];
  if (!arg) {
    console.error(`usage: node ${script} <base-url>   (e.g. http://127.0.0.1:3101)`);
    process.exit(2);
  }
  return arg.replace(/\/+$/, '');
}

/**
 * Runs `main` under a hard budget, prints PASS/FAIL (with the problems pages reported) and
 * exits 0 or 1: the Rust side reads only the exit status and the output.
 */
export async function runBounded(budgetMs, passLine, problems, main) {
  const watchdog = setTimeout(() => {
    console.error(`FAIL: exceeded the ${budgetMs / 1000} s budget`);
    if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
    process.exit(3);
  }, budgetMs);
  watchdog.unref();
  try {
    await main();
    log(`PASS: ${passLine}`);
    process.exit(0);
  } catch (e) {
    const msg = e instanceof CheckFailed ? e.message : (e && e.stack) || String(e);
    console.error(`FAIL: ${msg}`);
    if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
}

/**
 * Debian's Chromium. `autoplay` false asks for Chrome's desktop default explicitly (an
 * AudioContext stays suspended until the user interacts with the page).
 */
export function launch({ autoplay = true, extraArgs = [] } = {}) {
  const args = [...CHROMIUM_ARGS, ...extraArgs];
  args.push(autoplay ? '--autoplay-policy=no-user-gesture-required' : '--autoplay-policy=document-user-activation-required');
  log(`launching ${chromiumPath} ${extraArgs.join(' ')}`);
  return chromium.launch({ executablePath: chromiumPath, args, timeout: 20_000 });
}

/** Records CSP violations, uncaught exceptions and console errors of `page` into `problems`. */
export function watch(name, page, problems) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content[- ]Security[- ]Policy/i.test(text)) problems.push(`${name}: CSP violation: ${text}`);
    else if (msg.type() === 'error') problems.push(`${name}: console error: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`${name}: uncaught exception: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`${name}: request failed: ${req.url()} (${req.failure() && req.failure().errorText})`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`${name}: ${res.request().method()} ${res.url()} answered ${res.status()}`);
  });
}

/** Waits until `fn(arg)` is truthy in the page; on timeout fails with `what`. */
export async function waitFor(page, what, fn, arg, timeout = STEP_TIMEOUT_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    throw new CheckFailed(`timed out after ${timeout} ms waiting for ${what}`);
  }
}

/**
 * The stream path of a repository id. Its first character is always percent-encoded: the
 * server decodes the id after it has set aside the Stream Manager's reserved first segments,
 * so this reaches the repository whatever its owner is called (the page encodes only when
 * the owner is a reserved word; the two ways must agree).
 */
export const streamPath = (repo) => {
  const [first, ...rest] = repo.split('/');
  const escaped = `%${first.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}${first.slice(1)}`;
  return `/stream/${[escaped, ...rest].join('/')}`;
};

/** `POST /stream/{repo}/test`; checks the answer and returns it. */
export async function postTest(base, repo, body) {
  const url = `${base}${streamPath(repo)}/test`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const text = await res.text();
  check(res.status === 200, `POST ${url} answered ${res.status}: ${text.slice(0, 300)}`);
  const answer = JSON.parse(text);
  check(answer.success === true && typeof answer.compositionId === 'string',
    `POST ${url}: unexpected answer ${text.slice(0, 300)}`);
  const frames = Math.round(body.duration * SAMPLE_RATE);
  check(answer.samples === frames, `POST ${url}: samples ${answer.samples} (frames), expected ${frames}`);
  log(`POST /stream/${repo}/test: ${answer.compositionId}, rendered in ${answer.renderTimeMs} ms, `
    + `${answer.listenersNotified} listener(s) notified`);
  return answer;
}

/**
 * Opens `GET /stream/{repo}` (default encoding: the original JSON arrays) and returns the
 * first `audio_buffer` with `compositionId`, its channels as Float32Arrays. A listener that
 * connects after the broadcast gets the latest composition first, so this may run after
 * the POST.
 */
export async function readComposition(base, repo, compositionId) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), STEP_TIMEOUT_MS);
  try {
    const res = await fetch(`${base}${streamPath(repo)}`, {
      headers: { accept: 'text/event-stream' },
      signal: controller.signal,
    });
    check(res.status === 200, `GET ${streamPath(repo)} answered ${res.status}`);
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of res.body) {
      pending += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = pending.indexOf('\n\n')) >= 0) {
        const frame = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (!data) continue;
        const message = JSON.parse(data);
        if (message.type === 'audio_buffer' && message.data.compositionId === compositionId) {
          const { buffer } = message.data;
          check(buffer.encoding === undefined, `the default stream declared encoding ${buffer.encoding}`);
          return { ...message.data, channels: buffer.channels.map((c) => Float32Array.from(c)) };
        }
      }
    }
    throw new CheckFailed(`GET ${streamPath(repo)} ended without composition ${compositionId}`);
  } catch (e) {
    if (controller.signal.aborted) throw new CheckFailed(`no composition ${compositionId} on ${streamPath(repo)} within ${STEP_TIMEOUT_MS} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/**
 * Frames to spot-check: evenly spread, plus each channel's loudest frame (so a silent or
 * zeroed buffer cannot pass by matching zeros). Returns [channel, frame] pairs.
 */
export function spotChecks(reference, count = 24) {
  const picks = [];
  reference.channels.forEach((samples, ch) => {
    let peak = 0;
    for (let i = 1; i < samples.length; i++) if (Math.abs(samples[i]) > Math.abs(samples[peak])) peak = i;
    check(samples[peak] !== 0, `the server sent a silent channel ${ch}`);
    picks.push([ch, peak]);
    for (let k = 0; k < count; k++) picks.push([ch, Math.floor((k * (samples.length - 1)) / (count - 1))]);
  });
  return picks;
}

/** Fails unless every picked page sample equals the server's float32 value exactly. */
export function compareSamples(what, reference, picks, got) {
  picks.forEach(([ch, i], k) => {
    const want = reference.channels[ch][i];
    check(Object.is(got[k], want) || got[k] === want,
      `${what}: channel ${ch} frame ${i} is ${got[k]}, the server sent ${want}`);
  });
  const nonzero = got.filter((v) => v !== 0).length;
  check(nonzero >= 2, `${what}: only ${nonzero} of the checked samples are non-zero`);
  log(`${what}: ${picks.length} samples equal the server's (${nonzero} non-zero)`);
}

/** Checks an AudioBuffer's shape ({length, sampleRate, numberOfChannels}) against `duration`. */
export function checkShape(what, shape, duration) {
  check(shape, `${what}: no AudioBuffer`);
  const length = Math.round(duration * SAMPLE_RATE);
  check(shape.length === length, `${what}: length ${shape.length}, expected ${length}`);
  check(shape.sampleRate === SAMPLE_RATE, `${what}: sampleRate ${shape.sampleRate}`);
  check(shape.numberOfChannels === 2, `${what}: ${shape.numberOfChannels} channels`);
}
