// The page's link to the server: a WebSocket member (join, heartbeats, reconnect with
// backoff and resume), or an SSE listener when asked (`?transport=sse`) or when the
// WebSocket cannot be opened. Frames go to session.js; `onChange` redraws after each.

import { heartbeatDelay } from './clock.js';
import {
  addLog, applyEnvelope, clientNow, hooks, resetClock, resetSession, setStatus, state,
} from './session.js';

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** Close codes after which the server expects the client to come back (protocol/src/close.rs). */
const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4000, 4001]);
const CLOSE_REASONS = {
  1000: 'closed',
  1001: 'server going away',
  1006: 'connection lost',
  1008: 'closed: too many messages (rate limit)',
  1009: 'closed: message too big',
  4000: 'ping timeout',
  4001: 'too slow to keep up',
  4002: 'replaced by another connection',
};
const SSE_EVENT_NAMES = ['snapshot', 'state_update', 'scroll_tick', 'sync_response',
  'room_stats', 'sheet', 'error', 'shutdown'];

const params = new URLSearchParams(location.search);
/** `?transport=sse`: follow as a listener without trying the WebSocket. */
export const sseRequested = params.get('transport') === 'sse';
/**
 * `?token=`: a session token for a server in the authenticated mode, passed on to the
 * WebSocket and SSE URLs (browsers cannot set an Authorization header on either).
 * `?shareToken=`: the share's token, to receive a share's data over SSE.
 */
const credentials = new URLSearchParams();
for (const name of ['token', 'shareToken']) {
  const value = params.get(name);
  if (value) credentials.set(name, value);
}
const credentialQuery = credentials.toString() ? `?${credentials}` : '';

let onChange = () => {};
let ws = null;
let es = null;
let heartbeatTimer = null;
let reconnectTimer = null;
let requestSeq = 0;
let failuresBeforeOpen = 0;
let wantConnected = false;
/** Whether a WebSocket of the current join ever opened: only then is a failure a blip. */
let everOpened = false;
let syncRequested = false;
/** Request id of the pending `join_session`, so an `error` answering it is not lost. */
let joinRequestId = null;
/** What the join sends: {name, role}. */
let joinAs = { name: '', role: 'follower' };

export function configure(options) {
  onChange = options.onChange;
}

/** Whether the page is connected or trying to be. */
export function isActive() {
  return wantConnected || state.connection === 'joined' || state.connection === 'listening';
}

hooks.requestSync = requestSync;
hooks.stateReceived = () => { syncRequested = false; };
hooks.joined = () => {
  joinRequestId = null;
  failuresBeforeOpen = 0;
};
hooks.error = (id, data) => {
  if (joinRequestId !== null && id === joinRequestId) onJoinRefused(data);
};

function receive(text) {
  applyEnvelope(text);
  onChange();
}

/** Sends one envelope; returns its request id, or null when not connected. */
export function send(type, data) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    if (type !== 'heartbeat') addLog('warn', `not connected: ${type} not sent`);
    return null;
  }
  requestSeq += 1;
  const id = `r${requestSeq}`;
  const env = { type, id };
  if (data !== undefined) env.data = data;
  ws.send(JSON.stringify(env));
  return id;
}

function requestSync() {
  if (syncRequested || state.transportKind !== 'websocket') return;
  syncRequested = true;
  send('sync_request');
}

function sendJoin() {
  const data = { sessionId: state.sessionId };
  if (joinAs.name) data.name = joinAs.name;
  data.role = joinAs.role === 'leader' ? 'leader' : 'follower';
  if (state.resumeToken) data.resumeToken = state.resumeToken;
  // The session token rides on the /ws URL; the share token goes in the join.
  if (credentials.has('shareToken')) data.shareToken = credentials.get('shareToken');
  joinRequestId = send('join_session', data);
}

/** The server turned the join down (bad session id, full session, ...): stop, don't retry. */
function onJoinRefused(d) {
  joinRequestId = null;
  if (d.code === 'UNAUTHORIZED' && state.resumeToken) {
    // A stale resume token: join afresh instead.
    state.resumeToken = null;
    sendJoin();
    return;
  }
  disconnect();
  setStatus('closed', `join refused: ${d.code || 'error'}`);
}

/**
 * Heartbeats: every 50 ms for 2 s after the socket opens, so the clock estimate is good
 * before the first bar is counted in, then one a second (clock.js).
 */
function startHeartbeats() {
  clearTimeout(heartbeatTimer);
  resetClock();
  const opened = clientNow();
  const beat = () => {
    send('heartbeat', { t0: clientNow() });
    heartbeatTimer = setTimeout(beat, heartbeatDelay(clientNow() - opened));
  };
  beat();
}

function stopHeartbeats() {
  clearTimeout(heartbeatTimer);
  heartbeatTimer = null;
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws${credentialQuery}`;
}

function connectWebSocket() {
  clearTimeout(reconnectTimer);
  state.transportKind = 'websocket';
  setStatus(state.reconnectAttempts > 0 ? 'reconnecting' : 'connecting',
    state.reconnectAttempts > 0 ? 'reconnecting…' : 'connecting…');
  let socket;
  try {
    socket = new WebSocket(wsUrl());
  } catch (e) {
    addLog('warn', `WebSocket unavailable (${e && e.message ? e.message : e}); using SSE`);
    startSse();
    return;
  }
  ws = socket;
  let opened = false;
  socket.onopen = () => {
    if (ws !== socket) return;
    opened = true;
    everOpened = true;
    sendJoin();
    startHeartbeats();
  };
  socket.onmessage = (ev) => {
    if (ws !== socket || typeof ev.data !== 'string') return;
    receive(ev.data);
  };
  socket.onerror = () => {
    // Always followed by `close`, which decides what happens next.
  };
  socket.onclose = (ev) => {
    if (ws !== socket) return;
    ws = null;
    stopHeartbeats();
    onWebSocketClosed(ev.code, ev.reason, opened);
  };
}

function onWebSocketClosed(code, reason, opened) {
  if (!wantConnected) {
    setStatus('idle', 'not connected');
    onChange();
    return;
  }
  const why = CLOSE_REASONS[code] || `closed (${code})`;
  if (!opened) {
    failuresBeforeOpen += 1;
    // Falling back is for browsers or networks without WebSockets; a server that is
    // restarting under a session that already worked is retried on the WebSocket.
    if (!everOpened && failuresBeforeOpen >= 2) {
      addLog('warn', 'WebSocket could not be opened twice; following over SSE');
      startSse();
      return;
    }
    scheduleReconnect(`could not connect (${code})`);
    return;
  }
  if (RECONNECT_CODES.has(code)) {
    scheduleReconnect(why);
    return;
  }
  wantConnected = false;
  addLog(code === 1000 ? 'info' : 'error', `${why}${reason ? ': ' + reason : ''}`);
  setStatus('closed', why);
  onChange();
}

function scheduleReconnect(why) {
  state.reconnectAttempts += 1;
  const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (state.reconnectAttempts - 1));
  const delay = Math.round(exp / 2 + Math.random() * exp / 2); // jitter: herds don't return at once
  addLog('warn', `${why}; reconnecting in ${(delay / 1000).toFixed(1)} s`);
  setStatus('reconnecting', `${why}, retry in ${(delay / 1000).toFixed(1)} s`);
  reconnectTimer = setTimeout(connectWebSocket, delay);
  onChange();
}

function startSse() {
  clearTimeout(reconnectTimer);
  if (ws) {
    const old = ws;
    ws = null;
    old.close(1000);
  }
  state.transportKind = 'sse';
  state.role = 'listener';
  state.resumeToken = null;
  setStatus('connecting', 'connecting (SSE)…');
  onChange();
  if (typeof EventSource === 'undefined') {
    setStatus('closed', 'neither WebSocket nor EventSource is available');
    onChange();
    return;
  }
  const source = new EventSource(`/sse/${state.sessionId}${credentialQuery}`);
  es = source;
  const onEvent = (ev) => {
    // A connection failure also fires `error`, as a plain Event without data: skip it.
    if (es === source && typeof ev.data === 'string') receive(ev.data);
  };
  // The contract sends unnamed events (`data:` only); named ones are accepted too.
  source.onmessage = onEvent;
  for (const name of SSE_EVENT_NAMES) source.addEventListener(name, onEvent);
  source.onopen = () => {
    if (es === source) setStatus('listening', 'listening');
    onChange();
  };
  source.onerror = () => {
    if (es !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. a non-stream reply): retry ourselves, with backoff.
      es = null;
      state.reconnectAttempts += 1;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.reconnectAttempts);
      setStatus('reconnecting', `SSE closed, retry in ${(delay / 1000).toFixed(1)} s`);
      reconnectTimer = setTimeout(() => { if (wantConnected) startSse(); }, delay);
    } else {
      // EventSource reconnects by itself, resuming with Last-Event-ID.
      setStatus('reconnecting', 'SSE reconnecting…');
    }
    onChange();
  };
}

/** Joins `sessionId` (already validated) as `{name, role}`, or listens to it over SSE. */
export function join(sessionId, as) {
  disconnect();
  resetSession(sessionId);
  joinAs = as;
  failuresBeforeOpen = 0;
  everOpened = false;
  wantConnected = true;
  const url = new URL(location.href);
  url.searchParams.set('session', sessionId);
  history.replaceState(null, '', url);
  if (sseRequested) {
    startSse();
  } else {
    connectWebSocket();
  }
  onChange();
}

function disconnect() {
  wantConnected = false;
  clearTimeout(reconnectTimer);
  stopHeartbeats();
  if (ws) {
    const old = ws;
    ws = null;
    if (old.readyState === WebSocket.OPEN) {
      old.send(JSON.stringify({ type: 'leave_session' }));
    }
    old.close(1000, 'leaving');
  }
  if (es) {
    es.close();
    es = null;
  }
}

export function leave() {
  disconnect();
  state.transportKind = null;
  state.clientId = null;
  state.role = null;
  state.resumeToken = null;
  setStatus('idle', 'not connected');
  addLog('info', 'left the session');
  onChange();
}
