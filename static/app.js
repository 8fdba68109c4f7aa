// bandsync web client: join a session over WebSocket (or listen over SSE) and show the
// shared position, extrapolated every animation frame from the latest transport state.
//
// Plain JS, no build step. Served with `default-src 'self'`, so nothing here may rely on
// inline scripts, inline style attributes or outside resources. (Setting properties on
// `element.style` from this file is CSSOM, which that policy allows.)
'use strict';

(() => {
  const HEARTBEAT_INTERVAL_MS = 2000;
  /** Clock samples kept; the one with the smallest round trip wins (least queueing noise). */
  const CLOCK_SAMPLES = 8;
  /** Passive samples (server timestamps on arrival) kept when no heartbeat is possible. */
  const PASSIVE_SAMPLES = 64;
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
  const SESSION_ID_RE = /^[A-Za-z0-9._/-]{1,128}$/;
  const BEATS_PER_BAR = 4;
  const LOG_LIMIT = 30;

  const params = new URLSearchParams(location.search);
  /** `?transport=sse`: follow as a listener without trying the WebSocket. */
  const sseRequested = params.get('transport') === 'sse';
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

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('join-form'),
    session: $('session'),
    name: $('name'),
    role: $('role'),
    join: $('join'),
    leave: $('leave'),
    status: $('status'),
    kind: $('transport-kind'),
    sseBadge: $('sse-badge'),
    sessionId: $('session-id'),
    clientId: $('client-id'),
    myRole: $('my-role'),
    leader: $('leader'),
    members: $('members'),
    clock: $('clock'),
    beat: $('beat'),
    bar: $('bar'),
    tempo: $('tempo'),
    playing: $('playing'),
    cells: Array.from(document.querySelectorAll('#beat-cells .cell')),
    progress: $('beat-progress'),
    message: $('message'),
    controlsNote: $('controls-note'),
    tempoInput: $('tempo-input'),
    setTempo: $('set-tempo'),
    play: $('play'),
    pause: $('pause'),
    seekInput: $('seek-input'),
    seek: $('seek'),
    messageInput: $('message-input'),
    sendMessage: $('send-message'),
    takeLead: $('take-lead'),
    stepDown: $('step-down'),
    log: $('log'),
  };
  const leaderControls = [
    el.tempoInput, el.setTempo, el.play, el.pause,
    el.seekInput, el.seek,
  ];
  /** Any member may post the session message (`update_message`); listeners cannot. */
  const memberControls = [el.messageInput, el.sendMessage];

  /** Everything the page knows; exposed as `window.bandsync.state` for tests and curious people. */
  const state = {
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
    lastTickSeq: null,
    droppedTicks: 0,
    /** Estimated server time minus client time, in ms, and how it was obtained. */
    clock: { offset: 0, rtt: null, source: 'none', samples: [], passive: [] },
    /** The position drawn in the last frame. */
    position: 0,
    reconnectAttempts: 0,
    log: [],
  };
  window.bandsync = { state };

  // Connection bookkeeping (not part of the inspectable state).
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

  // ---- clock ---------------------------------------------------------------------------

  /** Client clock in ms since the epoch: monotonic between samples, sub-ms precision. */
  const clientNow = (typeof performance !== 'undefined' && performance.timeOrigin)
    ? () => performance.timeOrigin + performance.now()
    : () => Date.now();

  /** Estimated server clock. */
  const serverNow = () => clientNow() + state.clock.offset;

  /** A heartbeat round trip: offset = ((t1 - t0) + (t2 - t3)) / 2, best of the last 8 by rtt. */
  function addHeartbeatSample(t0, t1, t2, t3) {
    const rtt = (t3 - t0) - (t2 - t1);
    const offset = ((t1 - t0) + (t2 - t3)) / 2;
    const samples = state.clock.samples;
    samples.push({ offset, rtt });
    if (samples.length > CLOCK_SAMPLES) samples.shift();
    const best = samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    state.clock.offset = best.offset;
    state.clock.rtt = best.rtt;
    state.clock.source = 'heartbeat';
  }

  /**
   * Without heartbeats (SSE, or before the first reply) every server timestamp still bounds
   * the offset: serverTime - arrival = offset - latency, so the largest recent sample is the
   * closest estimate.
   */
  function addPassiveSample(serverTime) {
    if (typeof serverTime !== 'number' || !isFinite(serverTime)) return;
    const passive = state.clock.passive;
    passive.push(serverTime - clientNow());
    if (passive.length > PASSIVE_SAMPLES) passive.shift();
    if (state.clock.source !== 'heartbeat') {
      state.clock.offset = Math.max(...passive);
      state.clock.source = 'passive';
    }
  }

  // ---- position model ------------------------------------------------------------------

  /** The contract's position model: beat + (playing ? (t - anchorTime) * tempo / 60000 : 0). */
  function positionAt(t) {
    const tr = state.transport;
    if (!tr) return 0;
    return tr.beat + (tr.playing ? (t - tr.anchorTime) * tr.tempo / 60000 : 0);
  }

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
  }

  function setTransport(tr) {
    if (!tr || !isNum(tr.tempo) || !isNum(tr.beat) || !isNum(tr.anchorTime)) return;
    state.transport = {
      playing: !!tr.playing, tempo: tr.tempo, beat: tr.beat, anchorTime: tr.anchorTime,
    };
  }

  // ---- incoming events -----------------------------------------------------------------

  function handleEnvelope(text) {
    let env;
    try {
      env = JSON.parse(text);
    } catch (_) {
      addLog('error', 'unreadable frame from server');
      return;
    }
    if (!env || typeof env.type !== 'string') return;
    const data = env.data || {};
    addPassiveSample(env.timestamp);
    switch (env.type) {
      case 'snapshot': onSnapshot(data); break;
      case 'state_update':
      case 'sync_response': onState(data); break;
      case 'scroll_tick': onTick(data); break;
      case 'room_stats': onStats(data); break;
      case 'heartbeat_response': onHeartbeat(data); break;
      case 'error':
        addLog('error', `${data.code || 'ERROR'}: ${data.message || ''}`, env.id);
        if (joinRequestId !== null && env.id === joinRequestId) onJoinRefused(data);
        break;
      case 'rate_limit_exceeded':
        addLog('warn', `rate limit exceeded, retry after ${data.retryAfterMs} ms`, env.id);
        break;
      case 'shutdown':
        addLog('warn', typeof data.reason === 'string' && data.reason ? data.reason : 'server shutting down');
        break;
      default:
        break; // Unknown events are ignored, as the contract asks.
    }
    render();
  }

  function onSnapshot(d) {
    joinRequestId = null;
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
    state.reconnectAttempts = 0;
    failuresBeforeOpen = 0;
    addPassiveSample(d.serverTime);
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
    syncRequested = false;
    setTransport(d.transport);
    if (typeof d.message === 'string') state.message = d.message;
    if ('leaderId' in d) setLeader(d.leaderId);
  }

  /** Ticks refresh the anchor: their beat holds at their serverTime. */
  function onTick(d) {
    if (!isNum(d.beat) || !isNum(d.serverTime) || !isNum(d.tempo)) return;
    if (isNum(d.version) && d.version < state.version) return; // from before a change we saw
    if (isNum(d.version) && d.version > state.version) requestSync(); // we missed a change
    if (isNum(d.seq)) {
      if (state.lastTickSeq !== null && d.seq > state.lastTickSeq + 1) {
        state.droppedTicks += d.seq - state.lastTickSeq - 1;
      }
      state.lastTickSeq = d.seq;
    }
    setTransport({ playing: d.playing, tempo: d.tempo, beat: d.beat, anchorTime: d.serverTime });
  }

  function onStats(d) {
    state.stats = {
      members: d.members, followers: d.followers, listeners: d.listeners,
    };
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
    if (![d.t0, d.t1, d.t2].every(isNum)) return;
    addHeartbeatSample(d.t0, d.t1, d.t2, t3);
  }

  // ---- outgoing events -----------------------------------------------------------------

  /** Sends one envelope; returns its request id, or null when not connected. */
  function send(type, data) {
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
    const name = el.name.value.trim();
    if (name) data.name = name;
    data.role = el.role.value === 'leader' ? 'leader' : 'follower';
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

  // ---- WebSocket -----------------------------------------------------------------------

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
      sendHeartbeat();
      clearInterval(heartbeatTimer);
      heartbeatTimer = setInterval(sendHeartbeat, HEARTBEAT_INTERVAL_MS);
    };
    socket.onmessage = (ev) => {
      if (ws !== socket || typeof ev.data !== 'string') return;
      handleEnvelope(ev.data);
    };
    socket.onerror = () => {
      // Always followed by `close`, which decides what happens next.
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
      clearInterval(heartbeatTimer);
      heartbeatTimer = null;
      onWebSocketClosed(ev.code, ev.reason, opened);
    };
  }

  function onWebSocketClosed(code, reason, opened) {
    if (!wantConnected) {
      setStatus('idle', 'not connected');
      render();
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
    render();
  }

  function scheduleReconnect(why) {
    state.reconnectAttempts += 1;
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (state.reconnectAttempts - 1));
    const delay = Math.round(exp / 2 + Math.random() * exp / 2); // jitter: herds don't return at once
    addLog('warn', `${why}; reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setStatus('reconnecting', `${why}, retry in ${(delay / 1000).toFixed(1)} s`);
    reconnectTimer = setTimeout(connectWebSocket, delay);
    render();
  }

  function sendHeartbeat() {
    send('heartbeat', { t0: clientNow() });
  }

  // ---- SSE -----------------------------------------------------------------------------

  const SSE_EVENT_NAMES = ['snapshot', 'state_update', 'scroll_tick', 'sync_response',
    'room_stats', 'error', 'shutdown'];

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
    render();
    if (typeof EventSource === 'undefined') {
      setStatus('closed', 'neither WebSocket nor EventSource is available');
      render();
      return;
    }
    const source = new EventSource(`/sse/${state.sessionId}${credentialQuery}`);
    es = source;
    const onEvent = (ev) => {
      // A connection failure also fires `error`, as a plain Event without data: skip it.
      if (es === source && typeof ev.data === 'string') handleEnvelope(ev.data);
    };
    // The contract sends unnamed events (`data:` only); named ones are accepted too.
    source.onmessage = onEvent;
    for (const name of SSE_EVENT_NAMES) source.addEventListener(name, onEvent);
    source.onopen = () => {
      if (es === source) setStatus('listening', 'listening');
      render();
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
      render();
    };
  }

  // ---- join / leave --------------------------------------------------------------------

  function join() {
    const sessionId = el.session.value.trim();
    if (!SESSION_ID_RE.test(sessionId)) {
      addLog('error', 'session id: 1 to 128 characters of A-Z a-z 0-9 . _ - /');
      render();
      return;
    }
    disconnect();
    Object.assign(state, {
      sessionId, clientId: null, role: null, leaderId: null, resumeToken: null,
      members: [], stats: null, message: '', version: -1, transport: null,
      lastTickSeq: null, droppedTicks: 0, reconnectAttempts: 0,
    });
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
    render();
  }

  function disconnect() {
    wantConnected = false;
    clearTimeout(reconnectTimer);
    clearInterval(heartbeatTimer);
    heartbeatTimer = null;
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

  function leave() {
    disconnect();
    state.transportKind = null;
    state.clientId = null;
    state.role = null;
    state.resumeToken = null;
    setStatus('idle', 'not connected');
    addLog('info', 'left the session');
    render();
  }

  // ---- controls ------------------------------------------------------------------------

  function numberFrom(input, what) {
    const v = Number(input.value);
    if (input.value.trim() === '' || !isFinite(v)) {
      addLog('error', `${what}: enter a number`);
      render();
      return null;
    }
    return v;
  }

  el.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    join();
  });
  el.leave.addEventListener('click', leave);
  el.setTempo.addEventListener('click', () => {
    const tempo = numberFrom(el.tempoInput, 'tempo');
    if (tempo === null) return;
    if (tempo < 20 || tempo > 400) {
      addLog('error', 'tempo must be 20 to 400 bpm');
      render();
      return;
    }
    send('set_tempo', { tempo });
  });
  el.play.addEventListener('click', () => send('play'));
  el.pause.addEventListener('click', () => send('pause'));
  el.seek.addEventListener('click', () => {
    const beat = numberFrom(el.seekInput, 'beat');
    if (beat === null) return;
    if (beat < 0) {
      addLog('error', 'beat must be 0 or more');
      render();
      return;
    }
    send('seek', { beat });
  });
  const sendMessage = () => {
    const text = el.messageInput.value;
    if ([...text].length > 1000) {
      addLog('error', 'message: at most 1000 characters');
      render();
      return;
    }
    send('update_message', { text });
  };
  el.sendMessage.addEventListener('click', sendMessage);
  el.messageInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') sendMessage();
  });
  el.takeLead.addEventListener('click', () => send('set_role', { role: 'leader' }));
  el.stepDown.addEventListener('click', () => send('set_role', { role: 'follower' }));

  // ---- rendering -----------------------------------------------------------------------

  function setStatus(connection, text) {
    state.connection = connection;
    state.statusText = text;
  }

  function addLog(level, text, id) {
    const time = new Date().toLocaleTimeString();
    state.log.push({ level, text, id: id ?? null, time });
    if (state.log.length > LOG_LIMIT) state.log.shift();
  }

  function setText(node, text) {
    const s = String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function fmtId(id) {
    if (!id) return '–';
    return id === state.clientId ? `${id} (you)` : id;
  }

  let lastShownTempo = null;
  let renderedLogLength = -1;
  let renderedLogLast = null;

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
      ? `${s.members} member${s.members === 1 ? '' : 's'} (${s.followers} follower${s.followers === 1 ? '' : 's'}, ${s.listeners} listener${s.listeners === 1 ? '' : 's'})`
      : (state.members.length ? `${state.members.length} member${state.members.length === 1 ? '' : 's'}` : '–'));
    const c = state.clock;
    setText(el.clock, c.source === 'none' ? '–'
      : `offset ${c.offset.toFixed(1)} ms${c.rtt !== null ? `, rtt ${c.rtt.toFixed(1)} ms` : ''} (${c.source})`);

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

    const connected = state.connection === 'joined' && state.transportKind === 'websocket';
    const isLeader = connected && state.role === 'leader';
    for (const c2 of leaderControls) c2.disabled = !isLeader;
    for (const c2 of memberControls) c2.disabled = !connected;
    el.takeLead.disabled = !connected || state.role === 'leader';
    el.stepDown.disabled = !isLeader;
    setText(el.controlsNote, state.transportKind === 'sse' || sseRequested
      ? 'listeners cannot control'
      : (isLeader ? 'you lead' : (connected ? 'only the leader can control' : 'join as leader to use')));

    const active = wantConnected || state.connection === 'joined' || state.connection === 'listening';
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

  function formatTempo(t) {
    return Number.isInteger(t) ? String(t) : t.toFixed(1);
  }

  let lastCell = -1;

  /** The last drawn position, and the version it was drawn under while playing. */
  let drawnFloor = { version: null, pos: 0 };

  /**
   * Per animation frame: extrapolate the position at estimated server time and draw it.
   * While the session plays on under one version the drawn position never goes back: a
   * clock-offset re-estimate of a few ms (a heartbeat with a better round trip) is absorbed
   * by holding the display until the true position passes it, instead of a jump back that a
   * musician would see. A new version (seek, pause, tempo) may move it anywhere.
   */
  function frame() {
    let pos = Math.max(0, positionAt(serverNow()));
    const playing = !!(state.transport && state.transport.playing);
    if (playing && drawnFloor.version === state.version) pos = Math.max(pos, drawnFloor.pos);
    drawnFloor = { version: playing ? state.version : null, pos };
    state.position = pos;
    setText(el.beat, pos.toFixed(2));
    const whole = Math.floor(pos);
    setText(el.bar, String(Math.floor(whole / BEATS_PER_BAR) + 1));
    const cell = state.transport ? whole % BEATS_PER_BAR : -1;
    if (cell !== lastCell) {
      el.cells.forEach((node, i) => node.classList.toggle('on', i === cell));
      lastCell = cell;
    }
    el.progress.style.transform = `scaleX(${(pos - whole).toFixed(4)})`;
    requestAnimationFrame(frame);
  }

  // ---- start ---------------------------------------------------------------------------

  el.session.value = params.get('session') || 'my-band';
  if (params.get('name')) el.name.value = params.get('name');
  if (params.get('role') === 'leader') el.role.value = 'leader';
  render();
  requestAnimationFrame(frame);
  if (params.get('autojoin') === '1') join();
})();
