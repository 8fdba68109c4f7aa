// The Stream Manager's operator page (`/operator?session=...`) in a real browser (Debian's
// Chromium, driven by playwright-core; no browser is ever downloaded).
//
//   BANDSYNC_BEARER_TOKEN=... node tests/browser/operator.mjs http://127.0.0.1:PORT
//
// Everything here is done through the page, as an operator would:
// 1. Without a token, Start is refused and the page shows the server's 401 verbatim.
// 2. The token is set (kept in sessionStorage); a text layer made with the form appears in
//    the overlay preview (the iframe, which the overlay's own CSP lets this origin frame);
//    its Hide/Show button hides and shows it there; Edit changes its text.
// 3. Start, Pause, Stop move the stream's state, shown on the page and in the preview.
// 4. A PNG uploaded with the page's file input becomes an image layer in the preview;
//    deleting the asset while the layer uses it shows the 409 with the layer's id.
// 5. Delete removes a layer; Reset brings back the default layers and idle.
// Any CSP violation, uncaught exception or unexpected error answer fails the run. Exit 0 on
// success, 1 with a FAIL line; bounded well under 60 s.

import { baseFromArgs, check, launch, log, runBounded, waitFor } from './repo_stream.mjs';
import { api, DEFAULT_MODEL_404, makePng, targetPath, TOKEN, watchPage } from './stream_manager.mjs';

const base = baseFromArgs('operator.mjs');
const SESSION = 'operator-band';
const problems = [];

const text = (page, sel) => page.locator(sel).textContent();

/** The overlay preview's frame, once it has connected. */
async function preview(page) {
  const frame = page.frame({ url: /\/overlay\?session=operator-band$/ });
  check(frame, `no overlay frame: ${page.frames().map((f) => f.url()).join(', ')}`);
  await waitFor(frame, 'the preview connected', () => window.bandsyncOverlay && window.bandsyncOverlay.connected);
  return frame;
}

async function refusedWithoutToken(page) {
  await page.click('#start');
  await waitFor(page, 'the refusal shown', () => /UNAUTHORIZED/.test(document.getElementById('result').textContent));
  const shown = await text(page, '#result');
  check(/^POST \/stream\/start: 401 UNAUTHORIZED: \S/.test(shown), `refusal shown as ${JSON.stringify(shown)}`);
  check(await page.evaluate(() => document.getElementById('result').classList.contains('error')), 'the refusal is not marked');
  log(`without a token: ${shown}`);
}

async function setToken(page) {
  await page.fill('#token', TOKEN);
  await page.click('#apply');
  const stored = await page.evaluate(() => sessionStorage.getItem('bandsync.operator.token'));
  check(stored === TOKEN, 'the token is not in sessionStorage');
  check(!page.url().includes(TOKEN), 'the token leaked into the URL');
}

async function createTextLayer(page, frame) {
  await page.selectOption('#f-type', 'text');
  await page.fill('#f-name', 'lyrics');
  await page.fill('#f-text', 'Hey Jude');
  await page.fill('#f-size', '48');
  await page.fill('#f-color', '#ffcc00');
  await page.fill('#f-x', '5');
  await page.fill('#f-y', '80');
  await page.fill('#f-w', '90');
  await page.click('#f-submit');
  await waitFor(page, 'the layer in the list', () => window.bandsyncOperator.layers().some((l) => l.name === 'lyrics'));
  const id = await page.evaluate(() => window.bandsyncOperator.layers().find((l) => l.name === 'lyrics').id);
  check(/^lyr_[0-9a-f]{12}$/.test(id), `layer id ${id}`);
  const sel = `[data-layer-id="${id}"]`;
  await waitFor(frame, 'the layer in the preview', (s) => {
    const el = document.querySelector(s);
    return el && !el.hidden && el.textContent === 'Hey Jude';
  }, sel);
  const color = await frame.evaluate((s) => getComputedStyle(document.querySelector(s)).color, sel);
  check(color === 'rgb(255, 204, 0)', `preview colour ${color}`);
  const fromServer = await api(base, 'GET', '/stream/layers', { session: SESSION });
  const saved = fromServer.layers.find((l) => l.id === id);
  check(saved && saved.content.style.fontSize === 48 && saved.position.width === 90, `saved ${JSON.stringify(saved)}`);
  log(`the form created ${id}; the preview shows it`);
  return { id, sel };
}

async function toggleAndEdit(page, frame, { id, sel }) {
  const row = `#layers li[data-layer-id="${id}"]`;
  await page.click(`${row} button[data-action="toggle"]`);
  await waitFor(frame, 'hidden in the preview', (s) => document.querySelector(s).hidden, sel);
  check(await text(page, `${row} button[data-action="toggle"]`) === 'Show', 'the button does not offer Show');
  await page.click(`${row} button[data-action="toggle"]`);
  await waitFor(frame, 'shown again in the preview', (s) => !document.querySelector(s).hidden, sel);
  log('Hide and Show toggled it in the preview');

  await page.click(`${row} button[data-action="edit"]`);
  check(await page.inputValue('#f-text') === 'Hey Jude', 'Edit did not load the layer');
  await page.fill('#f-text', "Don't make it bad");
  await page.click('#f-submit');
  await waitFor(frame, 'the edited text', (s) => document.querySelector(s).textContent === "Don't make it bad", sel);
  check(await text(page, '#form-title') === 'New layer', 'the form stayed in edit mode');
  log('Edit changed its text');
}

async function stateButtons(page, frame) {
  for (const [button, state] of [['#start', 'live'], ['#pause', 'paused'], ['#start', 'live'], ['#stop', 'stopped']]) {
    await page.click(button);
    await waitFor(page, `state ${state}`, (s) => document.getElementById('state').textContent === s
      && document.getElementById('state').dataset.state === s, state);
    await waitFor(frame, `preview state ${state}`, (s) => document.body.dataset.streamState === s, state);
  }
  check(await page.isDisabled('#pause') && await page.isDisabled('#stop') && !(await page.isDisabled('#start')),
    'the buttons of a stopped stream');
  const status = await api(base, 'GET', '/stream/status', { session: SESSION });
  check(status.state === 'stopped' && status.startedAt !== null, `status ${JSON.stringify(status)}`);
  log('Start, Pause, Start, Stop: live, paused, live, stopped (page and preview)');
}

async function imageFromUpload(page, frame) {
  await page.setInputFiles('#u-file', { name: 'badge.png', mimeType: 'image/png', buffer: makePng(64, 64) });
  await page.click('#u-submit');
  await waitFor(page, 'the asset listed', () => window.bandsyncOperator.assets().some((a) => a.name === 'badge.png'));
  const asset = await page.evaluate(() => window.bandsyncOperator.assets().find((a) => a.name === 'badge.png'));
  await page.selectOption('#f-type', 'image');
  await page.selectOption('#f-asset', asset.id);
  await page.fill('#f-name', 'badge');
  await page.fill('#f-x', '85');
  await page.fill('#f-y', '5');
  await page.fill('#f-w', '10');
  await page.fill('#f-h', '');
  await page.click('#f-submit');
  await waitFor(page, 'the image layer', () => window.bandsyncOperator.layers().some((l) => l.name === 'badge'));
  const id = await page.evaluate(() => window.bandsyncOperator.layers().find((l) => l.name === 'badge').id);
  await waitFor(frame, 'the image in the preview', (s) => {
    const img = document.querySelector(`${s} img`);
    return img && img.complete && img.naturalWidth === 64;
  }, `[data-layer-id="${id}"]`);
  log(`uploaded badge.png through the page (${asset.id}); its layer shows in the preview`);

  await page.click(`#assets li[data-asset-id="${asset.id}"] button[data-action="delete-asset"]`);
  await waitFor(page, 'the 409 shown', () => /ASSET_IN_USE/.test(document.getElementById('result').textContent));
  const shown = await text(page, '#result');
  check(shown.startsWith(`DELETE /stream/assets/${asset.id}: 409 ASSET_IN_USE: `) && shown.endsWith(`(layers: ${id})`),
    `409 shown as ${JSON.stringify(shown)}`);
  check(await page.evaluate((a) => window.bandsyncOperator.assets().some((x) => x.id === a), asset.id), 'the asset left the list');
  log(`deleting the asset in use: ${shown}`);
  return id;
}

async function deleteAndReset(page, frame, { id, sel }) {
  await page.click(`#layers li[data-layer-id="${id}"] button[data-action="delete"]`);
  await waitFor(frame, 'the layer gone from the preview', (s) => !document.querySelector(s), sel);
  await page.screenshot({ path: targetPath('operator-page.png'), fullPage: true });
  await page.click('#reset');
  await waitFor(page, 'idle with the defaults', () => document.getElementById('state').textContent === 'idle'
    && window.bandsyncOperator.layers().map((l) => l.id).sort().join() === 'host,overlay');
  await waitFor(frame, 'the preview back to the defaults', () => document.body.dataset.streamState === 'idle'
    && [...document.querySelectorAll('[data-layer-id]')].map((e) => e.dataset.layerId).sort().join() === 'host,overlay');
  log('Delete removed the layer; Reset brought back idle and the default layers');
}

await runBounded(55_000, 'the operator page manages the stream and its preview follows', problems, async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    watchPage('operator', page, problems, [
      DEFAULT_MODEL_404,
      [401, /\/stream\/start\?session=operator-band$/],
      [409, /\/stream\/assets\/ast_[0-9a-f]{32}\?session=operator-band$/],
    ]);
    const res = await page.goto(`${base}/operator?session=${SESSION}`, { waitUntil: 'load' });
    check(res && res.status() === 200, `GET /operator answered ${res && res.status()}`);
    await waitFor(page, 'the page connected', () => window.bandsyncOperator.connected && window.bandsyncOperator.state === 'idle');
    const frame = await preview(page);
    await refusedWithoutToken(page);
    await setToken(page);
    const lyrics = await createTextLayer(page, frame);
    await toggleAndEdit(page, frame, lyrics);
    await stateButtons(page, frame);
    const badge = await imageFromUpload(page, frame);
    check(badge, 'no image layer');
    await deleteAndReset(page, frame, lyrics);
    const errors = await page.evaluate(() => window.bandsyncOperator.errors);
    check(errors.length === 2, `the page saw other refusals: ${errors.join('; ')}`);
  } finally {
    await browser.close();
  }
  check(problems.length === 0, 'the page reported problems');
});
