// What the page knows of its session, and how each server event changes it. No DOM and no
// sockets here: connection.js feeds envelopes in, view.js draws the result.

import { ClockEstimator } from './clock.js';
import { readScheduled, readTransport } from './timeline.js';

const LOG_LIMIT = 30;

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** Everything the page knows; exposed as `window.bandsync.state` for tests and curious people. */
export const state = {
  /** idle | connecting | joined | reconnecting | closed | listening */
  connection: 'idle',
  /** 'websocket' | 'sse' | null */
  transportKind: null,
  statusText: 'not connected',
  sessionId: null,
  clientId: null,
  role: null,
  leaderId: null,
  resumeToken: null,
  members: [],
  stats: null,
  message: '',
  version: -1,
  /** {playing, tempo, beat, anchorTime}, or null before the first snapshot. */
  transport: null,
  /** The announced change waiting for its instant: {id, action, at, transport}, or null. */
  scheduled: null,
  /** The session's ChordPro sheet ('' while none is set). */
  sheet: '',
  lastTickSeq: null,
  droppedTicks: 0,
  /** Estimated server time minus client time, in ms, its error bound and how it was obtained. */
  clock: { offset: 0, rtt: null, error: null, source: 'none' },
  /** The position drawn in the last frame. */
  position: 0,
  reconnectAttempts: 0,
  log: [],
};

/**
 * What the connection does in answer to events (connection.js fills these in): ask for a
 * resync, note a successful join, note a state event, hear an `error` (for the join).
 */
export const hooks = {
  requestSync() {},
  joined() {},
  stateReceived() {},
  error() {},
};

const clock = new ClockEstimator();

/** Client clock in ms since the epoch: monotonic between samples, sub-ms precision. */
export const clientNow = (typeof performance !== 'undefined' && performance.timeOrigin)
  ? () => performance.timeOrigin + performance.now()
  : () => Date.now();

/** Estimated server clock. */
export const serverNow = () => clientNow() + state.clock.offset;

function useEstimate(est) {
  if (!est) return;
  state.clock.offset = est.offset;
  state.clock.rtt = est.rtt;
  state.clock.error = est.error;
  state.clock.source = est.source;
}

/** A new join: heartbeat samples from an earlier connection no longer describe the route. */
export function resetClock() {
  clock.resetHeartbeats();
}

export function setStatus(connection, text) {
  state.connection = connection;
  state.statusText = text;
}

export function addLog(level, text, id) {
  const time = new Date().toLocaleTimeString();
  state.log.push({ level, text, id: id ?? null, time });
  if (state.log.length > LOG_LIMIT) state.log.shift();
}

/** Forgets the session (a new join). */
export function resetSession(sessionId) {
  Object.assign(state, {
    sessionId, clientId: null, role: null, leaderId: null, resumeToken: null,
    members: [], stats: null, message: '', version: -1, transport: null, scheduled: null,
    sheet: '', lastTickSeq: null, droppedTicks: 0, reconnectAttempts: 0,
  });
}

function setTransport(tr) {
  const t = readTransport(tr);
  if (t) state.transport = t;
}

/** Applies one frame from the server; unknown events are ignored, as the contract asks. */
export function applyEnvelope(text) {
  let env;
  try {
    env = JSON.parse(text);
  } catch (_) {
    addLog('error', 'unreadable frame from server');
    return;
  }
  if (!env || typeof env.type !== 'string') return;
  const data = env.data && typeof env.data === 'object' ? env.data : {};
  useEstimate(clock.addPassive(env.timestamp, clientNow()));
  switch (env.type) {
    case 'snapshot': onSnapshot(data); break;
    case 'state_update':
    case 'sync_response': onState(data); break;
    case 'scroll_tick': onTick(data); break;
    case 'room_stats': onStats(data); break;
    case 'heartbeat_response': onHeartbeat(data); break;
    case 'sheet': onSheet(data); break;
    case 'error':
      addLog('error', `${data.code || 'ERROR'}: ${data.message || ''}`, env.id);
      hooks.error(env.id, data);
      break;
    case 'rate_limit_exceeded':
      addLog('warn', `rate limit exceeded, retry after ${data.retryAfterMs} ms`, env.id);
      break;
    case 'shutdown':
      addLog('warn', typeof data.reason === 'string' && data.reason ? data.reason : 'server shutting down');
      break;
    default:
      break;
  }
}

function onSnapshot(d) {
  state.sessionId = d.sessionId;
  state.clientId = d.clientId || null;
  state.role = d.role || null;
  if (d.resumeToken) state.resumeToken = d.resumeToken;
  state.leaderId = d.leaderId ?? null;
  state.members = Array.isArray(d.members) ? d.members : [];
  state.message = typeof d.message === 'string' ? d.message : '';
  state.version = isNum(d.version) ? d.version : -1;
  state.lastTickSeq = null;
  setTransport(d.transport);
  state.scheduled = readScheduled(d.scheduled);
  state.sheet = typeof d.sheet === 'string' ? d.sheet : '';
  state.reconnectAttempts = 0;
  useEstimate(clock.addPassive(d.serverTime, clientNow()));
  hooks.joined();
  if (state.transportKind === 'sse') {
    setStatus('listening', 'listening');
  } else {
    setStatus('joined', d.resumed ? 'joined (resumed)' : 'joined');
  }
  addLog('info', state.transportKind === 'sse'
    ? `listening to ${d.sessionId}`
    : `${d.resumed ? 'resumed' : 'joined'} ${d.sessionId} as ${d.role}`);
}

function onState(d) {
  if (isNum(d.version) && d.version < state.version) return; // stale
  if (isNum(d.version)) state.version = d.version;
  hooks.stateReceived();
  setTransport(d.transport);
  // A state event always says what is pending: absent means nothing (done or withdrawn).
  state.scheduled = readScheduled(d.scheduled);
  if (typeof d.message === 'string') state.message = d.message;
  if ('leaderId' in d) setLeader(d.leaderId);
}

/** Ticks refresh the anchor: their beat holds at their serverTime. */
function onTick(d) {
  if (!isNum(d.beat) || !isNum(d.serverTime) || !isNum(d.tempo)) return;
  if (isNum(d.version) && d.version < state.version) return; // from before a change we saw
  if (isNum(d.version) && d.version > state.version) hooks.requestSync(); // we missed a change
  if (isNum(d.seq)) {
    if (state.lastTickSeq !== null && d.seq > state.lastTickSeq + 1) {
      state.droppedTicks += d.seq - state.lastTickSeq - 1;
    }
    state.lastTickSeq = d.seq;
  }
  setTransport({ playing: d.playing, tempo: d.tempo, beat: d.beat, anchorTime: d.serverTime });
}

function onSheet(d) {
  if (typeof d.text !== 'string') return;
  if (isNum(d.version) && d.version < state.version) return;
  // The sheet's change has a session version of its own; holding it keeps the next tick
  // (which carries it) from looking like a missed change.
  if (isNum(d.version)) state.version = d.version;
  state.sheet = d.text;
  addLog('info', d.text ? 'the leader set the sheet' : 'the leader cleared the sheet');
}

function onStats(d) {
  state.stats = { members: d.members, followers: d.followers, listeners: d.listeners };
  if ('leaderId' in d) setLeader(d.leaderId);
}

function setLeader(leaderId) {
  state.leaderId = leaderId ?? null;
  if (state.transportKind !== 'websocket' || !state.clientId) return;
  if (state.leaderId === state.clientId) {
    state.role = 'leader';
  } else if (state.role === 'leader') {
    state.role = 'follower';
  }
}

function onHeartbeat(d) {
  const t3 = clientNow();
  useEstimate(clock.addHeartbeat(d.t0, d.t1, d.t2, t3));
}
