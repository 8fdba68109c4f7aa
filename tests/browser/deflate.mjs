// permessage-deflate against Chromium's own implementation (Debian's Chromium, driven by
// playwright-core; no browser is ever downloaded).
//
//   node tests/browser/deflate.mjs http://127.0.0.1:PORT
//
// In the served page, two WebSockets join one session. Both must report
// `ws.extensions` with permessage-deflate and the parameters the server answers with.
// The first sends a 900-character update_message (Chromium compresses what it sends); both
// must receive the state_update (about 1.1 KB, over COMPRESSION_THRESHOLD, so the server
// sends it compressed) with the exact text. The server's /metrics must then show
// compressed messages in both directions. Exit 0 on success, 1 with a FAIL line; bounded
// well under 60 s.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium).

import { chromium } from 'playwright-core';

const TOTAL_BUDGET_MS = 45_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

const baseArg = process.argv[2];
if (!baseArg) {
  console.error('usage: node deflate.mjs <base-url>   (e.g. http://127.0.0.1:3101)');
  process.exit(2);
}
const base = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;

const watchdog = setTimeout(() => {
  console.error(`FAIL: deflate browser test exceeded its ${TOTAL_BUDGET_MS / 1000} s budget`);
  process.exit(3);
}, TOTAL_BUDGET_MS);
watchdog.unref();

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Runs in the page: two sockets, a join each, one long update_message. */
async function inPage({ wsUrl, session, text }) {
  const timeout = (ms, what) => new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms));
  function open() {
    const ws = new WebSocket(wsUrl);
    const queue = [];
    const waiters = [];
    ws.onmessage = (e) => {
      const event = JSON.parse(e.data);
      const i = waiters.findIndex((w) => w.pred(event));
      if (i >= 0) waiters.splice(i, 1)[0].resolve(event);
      else queue.push(event);
    };
    const next = (pred, what) => {
      const i = queue.findIndex(pred);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
      return Promise.race([
        new Promise((resolve) => waiters.push({ pred, resolve })),
        timeout(8000, what),
      ]);
    };
    const opened = Promise.race([
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('websocket error'));
      }),
      timeout(8000, 'open'),
    ]);
    return { ws, next, opened };
  }
  const a = open();
  const b = open();
  await Promise.all([a.opened, b.opened]);
  const send = (s, type, data, id) => s.ws.send(JSON.stringify({ type, id, data }));
  send(a, 'join_session', { sessionId: session, role: 'leader' }, 'ja');
  await a.next((e) => e.type === 'snapshot', 'snapshot A');
  send(b, 'join_session', { sessionId: session }, 'jb');
  await b.next((e) => e.type === 'snapshot', 'snapshot B');
  send(a, 'update_message', { text }, 'm');
  const isUpdate = (e) => e.type === 'state_update' && e.data.message === text;
  const [ua, ub] = await Promise.all([
    a.next(isUpdate, 'state_update on A'),
    b.next(isUpdate, 'state_update on B'),
  ]);
  const result = {
    extensions: [a.ws.extensions, b.ws.extensions],
    sizes: [JSON.stringify(ua).length, JSON.stringify(ub).length],
  };
  a.ws.close();
  b.ws.close();
  return result;
}

function metric(body, series) {
  const line = body.split('\n').find((l) => l.startsWith(series));
  return line ? Number(line.slice(series.length).trim()) : 0;
}

async function main() {
  log(`launching ${chromiumPath}`);
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20_000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(base);
    const wsUrl = `${base.replace(/^http/, 'ws')}ws`;
    const session = `deflate-${Date.now().toString(36)}`;
    const text = 'Chorus twice, then the bridge; watch the tempo. '.repeat(20).slice(0, 900);
    const result = await page.evaluate(inPage, { wsUrl, session, text });
    log(`ws.extensions: ${JSON.stringify(result.extensions)}`);
    for (const ext of result.extensions) {
      check(ext.startsWith('permessage-deflate'), `permessage-deflate not negotiated: "${ext}"`);
      check(ext.includes('server_no_context_takeover') && ext.includes('client_no_context_takeover'),
        `unexpected parameters: "${ext}"`);
    }
    check(result.sizes.every((n) => n > 1024), `state_update below the threshold: ${result.sizes}`);

    const body = await (await fetch(`${base}metrics`)).text();
    const sent = metric(body, 'bandsync_deflate_messages_total{direction="out"}');
    const received = metric(body, 'bandsync_deflate_messages_total{direction="in"}');
    log(`server: ${sent} compressed messages sent, ${received} compressed messages inflated`);
    check(sent >= 2, `expected the state_update compressed to both pages, saw ${sent}`);
    check(received >= 1, `expected Chromium's messages to arrive compressed, saw ${received}`);
  } finally {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5_000))]);
  }
}

try {
  await main();
  log('PASS: Chromium negotiated permessage-deflate and a large update round-tripped');
  process.exit(0);
} catch (e) {
  console.error(`FAIL: ${(e && e.stack) || e}`);
  process.exit(1);
}
