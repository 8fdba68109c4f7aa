// uWebSockets.js v20.30 (@trufflesuite/uws-js-unofficial) serving the part of bandsync's /ws
// protocol that `bandsync-bench`'s fanout, ticks and connect scenarios use, framed as bandsync
// frames it (protocol/PROTOCOL.md): join_session -> snapshot (id echoed) + coalesced
// room_stats; set_tempo / play / pause -> state_update to every member; scroll_tick on the
// wall-clock grid with bandsync's seq; heartbeat, leave_session, sync_request; bandsync's
// error codes, per-socket rate limit and caps. Broadcast uses uWS's own pub/sub
// (`ws.subscribe`, `app.publish`): the fast path a uWS user takes, the one to beat.
//
// Not served (no scenario needs it): resume (tokens are issued, never honoured); a dropped
// leader frees the seat at once and empty sessions are forgotten at once (bandsync holds
// them); ticks queue behind a slow reader (uWS has no latest-wins); a message over
// MAX_MESSAGE_BYTES closes the socket; seek, set_role, update_message, SSE, the share API.
//
//   node server.mjs [--port N] [--host H]   (or PORT / HOST; port 0, the default: any free)
// Prints one JSON line on stdout once listening: {"port":N,"native":"<the .node loaded>"}.

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join as joinPath } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

const here = dirname(fileURLToPath(import.meta.url));

// The package's entry point silently falls back to a pure-JS server (on `ws`) when the
// native addon fails to load: load the addon for this platform and Node ABI directly, and
// refuse to run without it, so a measurement is never of the fallback.
function loadNative() {
  const pkg = joinPath(here, "node_modules", "@trufflesuite", "uws-js-unofficial");
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const tried = ["binaries", "dist"].map((dir) => joinPath(pkg, dir, file));
  const path = tried.find((p) => existsSync(p));
  if (!path) {
    throw new Error(`no native uWebSockets.js addon at ${tried.join(" or ")} (run benches/reference/install.sh; Node ${process.version})`);
  }
  const uws = createRequire(import.meta.url)(path);
  if (typeof uws.App !== "function" || uws.DISABLED === undefined) {
    throw new Error(`${path} is not the uWebSockets.js addon`);
  }
  return { uws, path };
}

let native;
try {
  native = loadNative();
} catch (e) {
  console.error(`uws reference server: ${e.message}`);
  process.exit(1);
}
const { uws } = native;

function arg(name, env, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : process.env[env];
  return v === undefined || v === "" ? fallback : v;
}
const intArg = (name, env, fallback, max) => {
  const v = Number(arg(name, env, fallback));
  if (!Number.isInteger(v) || v < 0 || v > max) {
    console.error(`uws reference server: --${name} must be an integer 0..=${max}`);
    process.exit(2);
  }
  return v;
};

// bandsync's defaults (PROTOCOL.md section 9), the same names as its environment.
const PORT = intArg("port", "PORT", 0, 65535);
const HOST = arg("host", "HOST", "127.0.0.1");
const TICK_MS = intArg("scroll-tick-interval", "SCROLL_TICK_INTERVAL", 16, 10000) || 16;
const ROOM_STATS_MS = 250;
const SNAPSHOT_MEMBER_LIMIT = 100;
const MAX_CONNECTIONS = 20000;
const MAX_SESSIONS = 10000;
const MAX_SESSION_MEMBERS = 20000;
const MAX_MESSAGE_BYTES = 16384;
const OUTBOX_MAX_BYTES = 4 * 1024 * 1024;
const COMPRESSION_THRESHOLD = 1024;
const RATE_WINDOW_MS = 1000;
const RATE_MAX = 100;
const RATE_CLOSE_AFTER = 50;
const SESSION_ID = /^[A-Za-z0-9._\/-]{1,128}$/;

// Server time as bandsync keeps it: the wall clock read once, advanced by a monotonic one.
const now = () => performance.timeOrigin + performance.now();

// serde_json prints an f64 that is whole with `.0` (`120.0`); JavaScript would print `120`.
const num = (x) => (Number.isInteger(x) && Math.abs(x) < 1e15 ? `${x}.0` : JSON.stringify(x));

function frame(type, idJson, data, t) {
  const id = idJson === undefined ? "" : `"id":${idJson},`;
  return `{"type":"${type}",${id}"timestamp":${num(t)},"data":${data}}`;
}

const position = (s, t) => s.beat + (s.playing ? ((t - s.anchorTime) * s.tempo) / 60000 : 0);
const transport = (s) =>
  `{"playing":${s.playing},"tempo":${num(s.tempo)},"beat":${num(s.beat)},"anchorTime":${num(s.anchorTime)}}`;
const leaderJson = (s) => (s.leaderId === null ? "null" : `"${s.leaderId}"`);
const stateData = (s, t) =>
  `{"sessionId":${s.idJson},"transport":${transport(s)},"message":${JSON.stringify(s.message)},"leaderId":${leaderJson(s)},"version":${s.version},"serverTime":${num(t)}}`;

const sessions = new Map();
const playing = new Set();
let connections = 0;

function newSession(id) {
  const t = now();
  return {
    id, idJson: JSON.stringify(id), playing: false, tempo: 120, beat: 0, anchorTime: t, message: "",
    version: 0, leaderId: null, members: new Map(), tickBase: 0, tickFrom: null,
    statsSentAt: -Infinity, statsTimer: null,
  };
}

const publish = (s, text) => app.publish(s.id, text, false, text.length > COMPRESSION_THRESHOLD);
const sendTo = (ws, text) => ws.send(text, false, text.length > COMPRESSION_THRESHOLD);
const error = (ws, idJson, code, message) =>
  sendTo(ws, frame("error", idJson, `{"code":"${code}","message":${JSON.stringify(message)}}`, now()));

function broadcastState(s, t) {
  publish(s, frame("state_update", undefined, stateData(s, t), t));
}

// room_stats is latest-value-wins per session: the first after a quiet spell goes at once,
// later changes within ROOM_STATS_MS are folded into one sent when the interval has passed.
function roomStats(s) {
  if (s.statsTimer !== null) return;
  const wait = s.statsSentAt + ROOM_STATS_MS - performance.now();
  if (wait <= 0) return sendStats(s);
  s.statsTimer = setTimeout(() => {
    s.statsTimer = null;
    if (sessions.get(s.id) === s) sendStats(s);
  }, wait);
}

function sendStats(s) {
  s.statsSentAt = performance.now();
  const members = s.members.size;
  const followers = s.leaderId !== null && s.members.has(s.leaderId) ? members - 1 : members;
  const data = `{"sessionId":${s.idJson},"members":${members},"followers":${followers},"listeners":0,"leaderId":${leaderJson(s)}}`;
  publish(s, frame("room_stats", undefined, data, now()));
}

// The tick grid (src/tick_grid.rs): deadline k at k x TICK_MS after the epoch; a session's
// seq counts the deadlines it played through, so it continues across pause and play.
const deadlineAtOrBefore = (t) => Math.floor(Math.max(t, 0) / TICK_MS);
function startTicks(s, t) {
  if (s.tickFrom === null) s.tickFrom = deadlineAtOrBefore(t) + 1;
  playing.add(s);
}
function stopTicks(s, t) {
  if (s.tickFrom !== null) {
    s.tickBase += Math.max(0, deadlineAtOrBefore(t) + 1 - s.tickFrom);
    s.tickFrom = null;
  }
  playing.delete(s);
}

function join(ws, u, d, idJson) {
  const sid = d.sessionId;
  if (typeof sid !== "string" || !SESSION_ID.test(sid)) {
    return error(ws, idJson, "INVALID_SESSION_ID", "sessionId must be 1-128 characters of A-Z a-z 0-9 . _ - /");
  }
  const name = d.name ?? null;
  if (name !== null && (typeof name !== "string" || [...name].length > 64 || /[\u0000-\u001f\u007f-\u009f]/.test(name))) {
    return error(ws, idJson, "INVALID_NAME", "name must be at most 64 characters, no control characters");
  }
  const want = d.role ?? "follower";
  if (want !== "leader" && want !== "follower") {
    return error(ws, idJson, "INVALID_MESSAGE", "role must be leader or follower");
  }
  if (u.session !== null) leave(ws, u, false);
  let s = sessions.get(sid);
  if (s === undefined) {
    if (sessions.size >= MAX_SESSIONS) return error(ws, idJson, "SESSION_LIMIT", "too many sessions");
    s = newSession(sid);
    sessions.set(sid, s);
  } else if (s.members.size >= MAX_SESSION_MEMBERS) {
    return error(ws, idJson, "SESSION_FULL", "the session is full");
  }
  const t = now();
  let role = "follower";
  if (want === "leader" && s.leaderId === null) {
    role = "leader";
    s.leaderId = u.clientId;
    s.version += 1;
    broadcastState(s, t); // to the others: the joiner is not subscribed yet
  }
  s.members.set(u.clientId, { name, role });
  u.session = s;
  ws.subscribe(s.id);
  const members = [];
  for (const [clientId, m] of s.members) {
    if (members.length === SNAPSHOT_MEMBER_LIMIT) break;
    members.push(`{"clientId":"${clientId}","name":${m.name === null ? "null" : JSON.stringify(m.name)},"role":"${m.role}"}`);
  }
  const data = `{"sessionId":${s.idJson},"clientId":"${u.clientId}","role":"${role}","resumeToken":"${randomBytes(16).toString("hex")}","leaderId":${leaderJson(s)},"members":[${members.join(",")}],"transport":${transport(s)},"message":${JSON.stringify(s.message)},"version":${s.version},"serverTime":${num(t)},"resumed":false,"membersTruncated":${s.members.size > SNAPSHOT_MEMBER_LIMIT},"replayCount":0}`;
  sendTo(ws, frame("snapshot", idJson, data, t));
  roomStats(s);
}

// Leaves the session (explicitly, or because the socket closed: uWS has unsubscribed it).
function leave(ws, u, closed) {
  const s = u.session;
  if (s === null) return;
  s.members.delete(u.clientId);
  u.session = null;
  if (!closed) ws.unsubscribe(s.id);
  if (s.members.size === 0) {
    playing.delete(s);
    if (s.statsTimer !== null) clearTimeout(s.statsTimer);
    sessions.delete(s.id);
    return;
  }
  if (s.leaderId === u.clientId) {
    s.leaderId = null;
    s.version += 1;
    broadcastState(s, now());
  }
  roomStats(s);
}

// A command that changes nothing is answered with a sync_response carrying its id.
const syncResponse = (ws, s, idJson) => {
  const t = now();
  sendTo(ws, frame("sync_response", idJson, stateData(s, t), t));
};

// set_tempo, play, pause: the session engine's checks, in its order.
function command(ws, u, type, d, idJson) {
  const s = u.session;
  if (s === null) return error(ws, idJson, "NOT_IN_SESSION", `join a session before \`${type}\``);
  if (type === "sync_request") return syncResponse(ws, s, idJson);
  if (s.leaderId !== u.clientId) return error(ws, idJson, "NOT_LEADER", `only the leader may send \`${type}\``);
  const t = now();
  if (type === "set_tempo") {
    const tempo = d.tempo;
    if (typeof tempo !== "number" || !(tempo >= 20 && tempo <= 400)) {
      return error(ws, idJson, "INVALID_TEMPO", "tempo must be a number from 20 to 400");
    }
    if (tempo === s.tempo) return syncResponse(ws, s, idJson);
    s.beat = position(s, t);
    s.tempo = tempo;
  } else if (type === "play") {
    const beat = d.beat ?? null;
    if (beat !== null && (typeof beat !== "number" || !Number.isFinite(beat) || beat < 0)) {
      return error(ws, idJson, "INVALID_BEAT", "beat must be a finite number >= 0");
    }
    if (s.playing && beat === null) return syncResponse(ws, s, idJson);
    s.beat = beat ?? position(s, t);
    s.playing = true;
    startTicks(s, t);
  } else {
    if (!s.playing) return syncResponse(ws, s, idJson);
    s.beat = position(s, t);
    s.playing = false;
    stopTicks(s, t);
  }
  s.anchorTime = t;
  s.version += 1;
  broadcastState(s, t);
}

// The per-socket rate limit: a GCRA bucket of RATE_MAX per RATE_WINDOW_MS with a burst of
// a whole window; RATE_CLOSE_AFTER violations without a quiet window close with 1008.
function overLimit(ws, u, t) {
  const interval = RATE_WINDOW_MS / RATE_MAX;
  const tat = Math.max(u.tat, t);
  if (tat - t <= RATE_WINDOW_MS - interval) {
    u.tat = tat + interval;
    return 0;
  }
  if (t - u.lastViolation > RATE_WINDOW_MS) u.violations = 0;
  u.lastViolation = t;
  u.violations += 1;
  if (u.violations > RATE_CLOSE_AFTER) {
    ws.end(1008, "rate limit");
    return -1;
  }
  return Math.max(1, Math.ceil(tat - t - (RATE_WINDOW_MS - interval)));
}

const SERVED = new Set(["join_session", "leave_session", "set_tempo", "play", "pause", "sync_request", "heartbeat"]);

function onMessage(ws, message, isBinary) {
  const t1 = now();
  const u = ws.getUserData();
  const retry = overLimit(ws, u, performance.now());
  if (retry < 0) return;
  let env;
  try {
    env = isBinary ? null : JSON.parse(Buffer.from(message).toString("utf8"));
  } catch (e) {
    if (retry === 0) error(ws, undefined, "INVALID_MESSAGE", `frame is not valid JSON: ${e.message}`);
    return;
  }
  const rawId = env?.id;
  const idOk = rawId === undefined || rawId === null || typeof rawId === "string" || typeof rawId === "number";
  const idJson = idOk && rawId !== undefined && rawId !== null ? JSON.stringify(rawId) : undefined;
  if (retry > 0) {
    return sendTo(ws, frame("rate_limit_exceeded", idJson, `{"retryAfterMs":${retry}}`, now()));
  }
  if (isBinary) return error(ws, undefined, "INVALID_MESSAGE", "binary frames are not accepted");
  if (env === null || typeof env !== "object" || Array.isArray(env) || typeof env.type !== "string") {
    return error(ws, undefined, "INVALID_MESSAGE", "a frame is a JSON object with a string `type`");
  }
  if (!idOk) return error(ws, undefined, "INVALID_MESSAGE", "id must be a string or a number");
  const d = env.data ?? {};
  if (typeof d !== "object" || Array.isArray(d)) return error(ws, idJson, "INVALID_MESSAGE", "data must be an object");
  const type = env.type;
  if (!SERVED.has(type)) {
    return error(ws, idJson, "UNKNOWN_TYPE", `event type \`${type.slice(0, 64)}\` is not served by the uWebSockets.js reference server`);
  }
  if (type === "heartbeat") {
    if (typeof d.t0 !== "number" || !Number.isFinite(d.t0)) return error(ws, idJson, "INVALID_MESSAGE", "t0 must be a finite number");
    const t2 = now();
    return sendTo(ws, frame("heartbeat_response", idJson, `{"t0":${num(d.t0)},"t1":${num(t1)},"t2":${num(t2)}}`, t2));
  }
  if (type === "join_session") return join(ws, u, d, idJson);
  if (type === "leave_session") {
    if (u.session === null) return error(ws, idJson, "NOT_IN_SESSION", "not in a session");
    return leave(ws, u, false);
  }
  command(ws, u, type, d, idJson);
}

const app = uws.App();

app.ws("/ws", {
  compression: uws.SHARED_COMPRESSOR, // negotiated only when the client offers it
  maxPayloadLength: MAX_MESSAGE_BYTES,
  maxBackpressure: OUTBOX_MAX_BYTES,
  closeOnBackpressureLimit: true, // a slow consumer is cut, as bandsync cuts it (4001)
  idleTimeout: 8, // uWS pings idle sockets and closes silent ones (4 s granularity)
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    if (connections >= MAX_CONNECTIONS) {
      res.writeStatus("503 Service Unavailable").writeHeader("Retry-After", "1")
        .end('{"error":"SERVER_FULL","message":"too many connections"}');
      return;
    }
    res.upgrade(
      { clientId: `c${randomBytes(8).toString("hex")}`, session: null, tat: 0, violations: 0, lastViolation: -Infinity },
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      context,
    );
  },
  open: () => {
    connections += 1;
  },
  message: (ws, message, isBinary) => {
    try {
      onMessage(ws, message, isBinary);
    } catch (e) {
      // One bad message must not take the server down (bandsync contains it to the message).
      console.error("uws reference server: message handler failed:", e);
    }
  },
  close: (ws) => {
    connections -= 1;
    const u = ws.getUserData();
    leave(ws, u, true);
  },
});

app.get("/health", (res) => {
  res.writeHeader("Content-Type", "application/json").end('{"status":"ok","server":"uws-reference"}');
});
app.any("/*", (res) => {
  res.writeStatus("404 Not Found").end();
});

// Ticks on the grid: after each deadline, every playing session gets its tick; deadlines
// missed while busy are skipped (never bunched), leaving a seq gap as in bandsync.
let nextDeadline = deadlineAtOrBefore(now()) + 1;
function tickLoop() {
  const t = now();
  const k = deadlineAtOrBefore(t);
  if (k >= nextDeadline) {
    for (const s of playing) {
      if (s.tickFrom === null || k < s.tickFrom) continue;
      const seq = s.tickBase + (k - s.tickFrom) + 1;
      const data = `{"sessionId":${s.idJson},"seq":${seq},"beat":${num(position(s, t))},"tempo":${num(s.tempo)},"playing":true,"version":${s.version},"serverTime":${num(t)}}`;
      publish(s, frame("scroll_tick", undefined, data, t));
    }
    nextDeadline = k + 1;
  }
  setTimeout(tickLoop, Math.max(1, nextDeadline * TICK_MS - now()));
}

app.listen(HOST, PORT, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws reference server: cannot listen on ${HOST}:${PORT}`);
    process.exit(1);
  }
  const port = uws.us_socket_local_port(listenSocket);
  process.stdout.write(`${JSON.stringify({ port, native: native.path })}\n`);
  tickLoop();
});

for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
