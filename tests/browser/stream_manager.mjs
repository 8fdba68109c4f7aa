// What the Stream Manager page tests (overlay.mjs, operator.mjs) share: the REST API seen from
// node with the bearer token (BANDSYNC_BEARER_TOKEN, the server's BEARER_TOKEN, set by
// tests/browser.rs), a real PNG made here, a page watcher that knows which refusals a test
// provoked on purpose, and a clock that node and the page share.

import { deflateSync } from 'node:zlib';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, log, STEP_TIMEOUT_MS } from './repo_stream.mjs';

export const TOKEN = process.env.BANDSYNC_BEARER_TOKEN || '';
const here = path.dirname(fileURLToPath(import.meta.url));

/** A file under the repository's target/ (made if missing), for screenshots kept as a record. */
export function targetPath(name) {
  const dir = path.resolve(here, '..', '..', 'target');
  mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution. The page computes the same
 * expression; both read the machine's one clock, so a time taken here and one taken in the
 * page can be subtracted.
 */
export const wallNow = () => performance.timeOrigin + performance.now();

/**
 * One REST call on a stream. `expect` is the status it must answer (default 200); returns
 * the parsed body. `form` sends a FormData (multipart), `body` JSON; `auth: false` sends no
 * token.
 */
export async function api(base, method, route, { session, body, form, expect = 200, auth = true } = {}) {
  const url = new URL(`${base}${route}`);
  if (session) url.searchParams.set('session', session);
  const headers = {};
  if (auth) {
    check(TOKEN, 'BANDSYNC_BEARER_TOKEN is not set');
    headers.authorization = `Bearer ${TOKEN}`;
  }
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  const text = await res.text();
  check(res.status === expect, `${method} ${route} answered ${res.status} (expected ${expect}): ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

/** Uploads `bytes` as `name` (multipart, one `file` part) and returns the asset. */
export async function upload(base, session, name, bytes, type = 'image/png') {
  const form = new FormData();
  form.append('file', new Blob([bytes], { type }), name);
  const answer = await api(base, 'POST', '/stream/assets/upload', { session, form, expect: 201 });
  check(answer.success === true && /^ast_[0-9a-f]{32}$/.test(answer.asset.id), `upload: ${JSON.stringify(answer)}`);
  check(answer.asset.type === type && answer.asset.size === bytes.length,
    `upload: asset ${answer.asset.type}, ${answer.asset.size} bytes; sent ${type}, ${bytes.length}`);
  log(`uploaded ${name}: ${answer.asset.id} (${answer.asset.size} bytes)`);
  return answer.asset;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * A real RGBA PNG of `width` x `height`: a diagonal gradient with a white border, so a
 * screenshot shows where it landed. Any decoder must accept it (CRCs and zlib are real).
 */
export function makePng(width, height) {
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 4); // filter byte 0: none
    for (let x = 0; x < width; x++) {
      const border = x < 2 || y < 2 || x >= width - 2 || y >= height - 2;
      const o = 1 + x * 4;
      row[o] = border ? 255 : Math.round((255 * x) / width);
      row[o + 1] = border ? 255 : 96;
      row[o + 2] = border ? 255 : Math.round((255 * y) / height);
      row[o + 3] = 255;
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Records CSP violations, uncaught exceptions, failed requests and error answers of `page`
 * (and its frames) into `problems`, except answers the test expects: `expected` is a list of
 * [status, RegExp on the URL]. Chromium logs each error answer to the console too, so that
 * console line is excused with it.
 */
export function watchPage(name, page, problems, expected) {
  const excused = (status, url) => expected.some(([s, re]) => s === status && re.test(url));
  page.on('console', (msg) => {
    const text = msg.text();
    const at = (msg.location() && msg.location().url) || '';
    if (/Content[- ]Security[- ]Policy/i.test(text)) problems.push(`${name}: CSP violation: ${text}`);
    else if (msg.type() === 'error') {
      const status = Number((/status of (\d+)/.exec(text) || [])[1]);
      if (!(status && excused(status, at))) problems.push(`${name}: console error: ${text} (${at})`);
    }
  });
  page.on('pageerror', (err) => problems.push(`${name}: uncaught exception: ${err.message}`));
  page.on('requestfailed', (req) => {
    // A socket the page closes itself (reconnect test, navigation) is not a failure.
    if (req.url().includes('/ws/stream')) return;
    problems.push(`${name}: request failed: ${req.url()} (${req.failure() && req.failure().errorText})`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !excused(res.status(), res.url())) {
      problems.push(`${name}: ${res.request().method()} ${res.url()} answered ${res.status()}`);
    }
  });
}

/** The default layers' character model is a relative path the server may not serve. */
export const DEFAULT_MODEL_404 = [404, /\/assets\/characters\/auctioneer\.png$/];
