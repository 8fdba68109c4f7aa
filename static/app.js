// bandsync web client: join a session over WebSocket (or listen over SSE), show the shared
// position extrapolated every animation frame, sound the click and scroll the chord sheet
// on the shared timeline. This file is the glue; each job is an ES module under /js/:
//
//   clock.js      the clock-offset estimator (pure)      timeline.js  the position model (pure)
//   chordpro.js   the sheet's parser and timing (pure)   session.js   state and incoming events
//   connection.js WebSocket / SSE, heartbeats, reconnect view.js      drawing
//   click.js      the Web Audio click                    sheet.js     the sheet on the page
//   controls.js   buttons and inputs
//
// Plain JS, no build step. Served with `default-src 'self'`, so nothing here may rely on
// inline scripts, inline style attributes or outside resources. (Setting properties on
// `element.style` from a script is CSSOM, which that policy allows.)

import { Click } from './js/click.js';
import { configure, join, leave } from './js/connection.js';
import { wireControls } from './js/controls.js';
import { addLog, state } from './js/session.js';
import { SheetView } from './js/sheet.js';
import { createView } from './js/view.js';
import { DEFAULT_BEATS_PER_BAR, MAX_BEATS_PER_BAR } from './js/chordpro.js';

const SESSION_ID_RE = /^[A-Za-z0-9._/-]{1,128}$/;

const $ = (id) => document.getElementById(id);
const el = {
  form: $('join-form'), session: $('session'), name: $('name'), role: $('role'),
  join: $('join'), leave: $('leave'), status: $('status'), kind: $('transport-kind'),
  sseBadge: $('sse-badge'), sessionId: $('session-id'), clientId: $('client-id'),
  myRole: $('my-role'), leader: $('leader'), members: $('members'), clock: $('clock'),
  beat: $('beat'), bar: $('bar'), tempo: $('tempo'), playing: $('playing'),
  cellsBox: $('beat-cells'), cells: [], progress: $('beat-progress'), pending: $('pending'),
  message: $('message'), controlsNote: $('controls-note'), tempoInput: $('tempo-input'),
  setTempo: $('set-tempo'), play: $('play'), pause: $('pause'), atNextBar: $('at-next-bar'),
  seekInput: $('seek-input'), seek: $('seek'), messageInput: $('message-input'),
  sendMessage: $('send-message'), takeLead: $('take-lead'), stepDown: $('step-down'),
  log: $('log'), clickToggle: $('click-toggle'), calibration: $('calibration'),
  beatsPerBar: $('beats-per-bar'), sheetBox: $('sheet-box'), sheetHeader: $('sheet-header'),
  sheetLines: $('sheet-lines'), sheetInput: $('sheet-input'), setSheet: $('set-sheet'),
  sheetBytes: $('sheet-bytes'),
};

const sheet = new SheetView({ box: el.sheetBox, header: el.sheetHeader, body: el.sheetLines });

/** The meter: the member's own setting, else the sheet's `{time: N/M}`, else 4. */
function beatsPerBar() {
  const own = Number(el.beatsPerBar.value);
  if (el.beatsPerBar.value.trim() !== '' && Number.isInteger(own) && own >= 1 && own <= MAX_BEATS_PER_BAR) {
    return own;
  }
  return sheet.sheetBeatsPerBar() || DEFAULT_BEATS_PER_BAR;
}

const click = new Click({
  timeline: () => ({ transport: state.transport, scheduled: state.scheduled, version: state.version }),
  clockOffset: () => state.clock.offset,
  beatsPerBar,
});

const view = createView({
  el,
  sheet,
  beatsPerBar,
  leaderControls: [el.tempoInput, el.setTempo, el.play, el.pause, el.atNextBar, el.seekInput,
    el.seek, el.sheetInput, el.setSheet],
  memberControls: [el.messageInput, el.sendMessage],
});
configure({ onChange: view.render });
wireControls({ el, render: view.render, beatsPerBar, click });

el.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const sessionId = el.session.value.trim();
  if (!SESSION_ID_RE.test(sessionId)) {
    addLog('error', 'session id: 1 to 128 characters of A-Z a-z 0-9 . _ - /');
    view.render();
    return;
  }
  join(sessionId, { name: el.name.value.trim(), role: el.role.value });
});
el.leave.addEventListener('click', leave);

window.bandsync = { state };
/** What the click and the sheet did, for tests (tests/browser/click_sheet.mjs). */
window.bandsyncDebug = {
  /** The last 256 clicks handed to the audio clock: {beat, accent, serverTime, contextTime}. */
  get clicks() { return click.clicks; },
  offset: () => state.clock.offset,
  clockError: () => state.clock.error,
  beatsPerBar,
  /** The server time a sound started at context time `c` (s) is heard at, by this page's clocks. */
  contextToServer: (c) => click.contextToServer(c),
  /** The client time (ms since the epoch) at which context time `c` is heard. */
  contextToClient: (c) => click.contextToClient(c),
  audioState: () => (click.ctx ? click.ctx.state : 'none'),
  reportedLatencyMs: () => click.reportedLatency() * 1000,
  mappingSamples: () => click.mapping.slice(),
  currentLine: () => sheet.current,
  sheetLines: () => sheet.parsed.lines.map((l) => ({ kind: l.kind, text: l.text, startBeat: l.startBeat, endBeat: l.endBeat })),
};

const params = new URLSearchParams(location.search);
el.session.value = params.get('session') || 'my-band';
if (params.get('name')) el.name.value = params.get('name');
if (params.get('role') === 'leader') el.role.value = 'leader';
view.render();
requestAnimationFrame(view.frame);
if (params.get('autojoin') === '1') el.form.requestSubmit();
