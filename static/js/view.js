// Drawing the page from the state: `render` after every event (status, members, controls,
// log), `frame` on every animation frame (the position, the beat cells, the pending change,
// the sheet's current line).

import { isActive, sseRequested } from './connection.js';
import { serverNow, state } from './session.js';
import { barOf, positionAt, positionWithSchedule } from './timeline.js';

const ACTIONS = { set_tempo: 'tempo', play: 'play', pause: 'pause', seek: 'seek' };

function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

export function formatTempo(t) {
  return Number.isInteger(t) ? String(t) : t.toFixed(1);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * `el`: the page's elements (app.js). `sheet`: the SheetView. `beatsPerBar()`: the meter in
 * use. `leaderControls` / `memberControls`: inputs enabled for the leader / any member.
 */
export function createView({ el, sheet, beatsPerBar, leaderControls, memberControls }) {
  let lastShownTempo = null;
  /** The sheet last put into the editor by the page (not typed). */
  let sheetInEditor = '';
  let renderedLogLength = -1;
  let renderedLogLast = null;
  let lastCell = -1;
  let cellCount = 0;
  /** The last drawn position, and the timeline segment it was drawn in while playing. */
  let drawnFloor = { segment: null, pos: 0 };

  const fmtId = (id) => {
    if (!id) return '–';
    return id === state.clientId ? `${id} (you)` : id;
  };

  /** Everything except the per-frame position. */
  function render() {
    el.status.dataset.state = state.connection;
    setText(el.status, state.statusText);
    setText(el.kind, state.transportKind || '');
    el.kind.hidden = !state.transportKind;
    el.sseBadge.hidden = state.transportKind !== 'sse';

    setText(el.sessionId, state.sessionId || '–');
    setText(el.clientId, state.clientId || '–');
    setText(el.myRole, state.role || '–');
    setText(el.leader, !state.sessionId ? '–' : (state.leaderId ? fmtId(state.leaderId) : 'none'));
    const s = state.stats;
    setText(el.members, s
      ? `${plural(s.members, 'member')} (${plural(s.followers, 'follower')}, ${plural(s.listeners, 'listener')})`
      : (state.members.length ? plural(state.members.length, 'member') : '–'));
    const c = state.clock;
    setText(el.clock, c.source === 'none' ? '–'
      : `offset ${c.offset.toFixed(1)} ms${c.error !== null ? ` ± ${c.error.toFixed(1)}` : ''}`
        + `${c.rtt !== null ? `, rtt ${c.rtt.toFixed(1)} ms` : ''} (${c.source})`);

    const tr = state.transport;
    setText(el.tempo, tr ? formatTempo(tr.tempo) : '–');
    // Keep the tempo field on the session's tempo, except while someone is typing in it.
    if (tr && document.activeElement !== el.tempoInput && tr.tempo !== lastShownTempo) {
      el.tempoInput.value = formatTempo(tr.tempo);
      lastShownTempo = tr.tempo;
    }
    setText(el.playing, tr ? (tr.playing ? 'playing' : 'stopped') : '–');
    el.playing.dataset.playing = String(!!(tr && tr.playing));
    setText(el.message, state.message);
    el.message.classList.toggle('empty', !state.message);
    sheet.set(state.sheet);
    // The editor follows the session's sheet while nobody edits it here (a new leader finds
    // the sheet to change, not an empty box); what someone typed is never overwritten.
    if (el.sheetInput.value === state.sheet) {
      sheetInEditor = state.sheet; // what was typed here became the session's sheet
    } else if (el.sheetInput.value === sheetInEditor && document.activeElement !== el.sheetInput) {
      el.sheetInput.value = state.sheet;
      sheetInEditor = state.sheet;
      el.sheetInput.dispatchEvent(new Event('input'));
    }

    const connected = state.connection === 'joined' && state.transportKind === 'websocket';
    const isLeader = connected && state.role === 'leader';
    for (const c2 of leaderControls) c2.disabled = !isLeader;
    for (const c2 of memberControls) c2.disabled = !connected;
    el.takeLead.disabled = !connected || state.role === 'leader';
    el.stepDown.disabled = !isLeader;
    setText(el.controlsNote, state.transportKind === 'sse' || sseRequested
      ? 'listeners cannot control'
      : (isLeader ? 'you lead' : (connected ? 'only the leader can control' : 'join as leader to use')));

    const active = isActive();
    el.join.disabled = active;
    el.leave.disabled = !active;
    el.session.disabled = active;
    el.name.disabled = active;
    el.role.disabled = active || sseRequested;

    if (state.log.length !== renderedLogLength || state.log[state.log.length - 1] !== renderedLogLast) {
      renderedLogLength = state.log.length;
      renderedLogLast = state.log[state.log.length - 1];
      const items = state.log.slice().reverse().map((entry) => {
        const li = document.createElement('li');
        li.className = entry.level;
        li.textContent = `${entry.time}  ${entry.text}${entry.id ? ` [${entry.id}]` : ''}`;
        return li;
      });
      el.log.replaceChildren(...items);
    }
  }

  /** One cell per beat of the bar (the meter may come from the sheet). */
  function layoutCells(bpb) {
    if (bpb === cellCount) return;
    cellCount = bpb;
    const cells = [];
    for (let i = 1; i <= bpb; i++) {
      const cell = document.createElement('div');
      cell.className = 'cell';
      cell.textContent = String(i);
      cells.push(cell);
    }
    el.cellsBox.replaceChildren(...cells);
    el.cellsBox.style.gridTemplateColumns = `repeat(${bpb}, 1fr)`;
    el.cells = cells;
    lastCell = -1;
  }

  /** "tempo 140 at bar 17, in 1.2 s": the change the leader scheduled, while it waits. */
  function drawPending(now, bpb) {
    const sc = state.scheduled;
    const waiting = sc && sc.at > now;
    el.pending.hidden = !waiting;
    if (!waiting) return;
    const before = state.transport;
    let what = ACTIONS[sc.action] || sc.action || 'change';
    if (sc.action === 'set_tempo') what = `tempo ${formatTempo(sc.transport.tempo)}`;
    if (sc.action === 'seek') what = `seek to beat ${sc.transport.beat.toFixed(2).replace(/\.00$/, '')}`;
    const bar = barOf(Math.max(0, positionAt(before, sc.at)), bpb);
    setText(el.pending, `${what} at bar ${bar}, in ${((sc.at - now) / 1000).toFixed(1)} s`);
  }

  /**
   * Per animation frame: extrapolate the position at estimated server time and draw it.
   * While the session plays on under one version the drawn position never goes back: a
   * clock-offset re-estimate of a few ms (a heartbeat with a better round trip) is absorbed
   * by holding the display until the true position passes it, instead of a jump back that a
   * musician would see. A new version (seek, pause, tempo) may move it anywhere.
   */
  function frame() {
    const now = serverNow();
    let pos = Math.max(0, positionWithSchedule(state.transport, state.scheduled, now));
    const playing = !!(state.transport && state.transport.playing);
    // A scheduled change taking effect is a new segment of the timeline, as a new version is.
    const segment = `${state.version}/${state.scheduled && now >= state.scheduled.at ? 'after' : 'before'}`;
    if (playing && drawnFloor.segment === segment) pos = Math.max(pos, drawnFloor.pos);
    drawnFloor = { segment: playing ? segment : null, pos };
    state.position = pos;
    const bpb = beatsPerBar();
    layoutCells(bpb);
    setText(el.beat, pos.toFixed(2));
    const whole = Math.floor(pos);
    setText(el.bar, String(Math.floor(whole / bpb) + 1));
    const cell = state.transport ? whole % bpb : -1;
    if (cell !== lastCell) {
      el.cells.forEach((node, i) => node.classList.toggle('on', i === cell));
      lastCell = cell;
    }
    el.progress.style.transform = `scaleX(${(pos - whole).toFixed(4)})`;
    drawPending(now, bpb);
    sheet.follow(state.transport ? pos : -1);
    requestAnimationFrame(frame);
  }

  return { render, frame };
}
