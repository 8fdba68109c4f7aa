// The seed's own stack for `cargo bench --bench socketio`: Node + Socket.IO 4, configured as
// the seed's README describes (websocket-only transport, per-message deflate from 1 KiB,
// connection state recovery, ping every 2.5 s with a 5 s timeout) and serving the bandsync
// contract the way the seed's authors wrote Socket.IO code: a session is a room, state
// changes and 16 ms ticks go out with `io.to(room).emit`, and every event carries its data
// plus `timestamp` as its one argument, as bandsync's `/socket.io/` endpoint emits them, so
// that one load client reads both servers.
//
// What it leaves out, because no figure of the bench depends on it: Redis, JWTs, SSE, the
// HTTP API beyond `/health`, and the per-socket rate limit (the bench stays far below it;
// leaving it out only spares Node work).
//
// Run: `node server.mjs [port]` (or PORT=..; 0 picks a free port). HOST defaults to
// 127.0.0.1. Once listening it prints `listening on HOST:PORT` on stdout, which the bench
// reads to learn the port.

import { createServer } from "node:http";
import { performance } from "node:perf_hooks";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT ?? process.argv[2] ?? 3001);
const HOST = process.env.HOST ?? "127.0.0.1";
const SCROLL_TICK_INTERVAL = Number(process.env.SCROLL_TICK_INTERVAL ?? 16);
const SOCKET_PING_INTERVAL = Number(process.env.SOCKET_PING_INTERVAL ?? 2500);
const SOCKET_PING_TIMEOUT = Number(process.env.SOCKET_PING_TIMEOUT ?? 5000);
const SNAPSHOT_MEMBER_LIMIT = 100;
const SESSION_ID = /^[A-Za-z0-9._\-/]{1,128}$/;
const MESSAGE_MAX_CHARS = 1000;

/** Server wall clock in ms with sub-millisecond precision, as the contract's `timestamp`. */
const now = () => performance.timeOrigin + performance.now();

/** sessionId -> session. A session lives while it has members. */
const sessions = new Map();

function newSession(sessionId) {
  return {
    sessionId,
    transport: { playing: false, tempo: 120, beat: 0, anchorTime: now() },
    message: "",
    leaderId: null,
    version: 0,
    seq: 0,
    timer: null,
    members: new Map(), // socket.id -> { clientId, name, role }
  };
}

const positionAt = (transport, t) =>
  transport.playing
    ? transport.beat + ((t - transport.anchorTime) * transport.tempo) / 60000
    : transport.beat;

function reanchor(transport, t) {
  transport.beat = positionAt(transport, t);
  transport.anchorTime = t;
}

const stateOf = (session) => ({
  sessionId: session.sessionId,
  transport: { ...session.transport },
  message: session.message,
  leaderId: session.leaderId,
  version: session.version,
  serverTime: now(),
});

function roomStats(session) {
  const members = session.members.size;
  const leaderConnected = session.leaderId !== null && session.members.has(session.leaderId);
  return {
    sessionId: session.sessionId,
    members,
    followers: members - (leaderConnected ? 1 : 0),
    listeners: 0,
    leaderId: session.leaderId,
    timestamp: now(),
  };
}

/** A server event's one argument: the contract's data plus `timestamp`, and `id` if asked. */
const withMeta = (data, id) => (id === undefined ? { ...data, timestamp: now() } : { ...data, timestamp: now(), id });

/** The request id (`data.id`), when the client gave a string or a number. */
const requestId = (data) =>
  data && (typeof data.id === "string" || typeof data.id === "number") ? data.id : undefined;

function startTicks(session) {
  if (session.timer !== null) return;
  session.timer = setInterval(() => {
    const t = now();
    session.seq += 1;
    io.to(session.sessionId).emit("scroll_tick", {
      sessionId: session.sessionId,
      seq: session.seq,
      beat: positionAt(session.transport, t),
      tempo: session.transport.tempo,
      playing: true,
      version: session.version,
      serverTime: t,
      timestamp: t,
    });
  }, SCROLL_TICK_INTERVAL);
}

function stopTicks(session) {
  if (session.timer !== null) {
    clearInterval(session.timer);
    session.timer = null;
  }
}

/** One change: version + 1, `state_update` to the whole room, ticks started or stopped. */
function commit(session) {
  session.version += 1;
  io.to(session.sessionId).emit("state_update", withMeta(stateOf(session)));
  if (session.transport.playing) startTicks(session);
  else stopTicks(session);
}

/**
 * Removes the socket from its session. On a disconnect `socket.data` is left as it is:
 * connection state recovery persisted that very object and hands it back on reconnect.
 */
function leave(socket, { disconnected = false } = {}) {
  const sessionId = socket.data.sessionId;
  const session = sessionId && sessions.get(sessionId);
  if (!disconnected) socket.data.sessionId = undefined;
  if (!session) return;
  if (!disconnected) socket.leave(sessionId);
  session.members.delete(socket.id);
  if (session.members.size === 0) {
    stopTicks(session);
    sessions.delete(sessionId);
    return;
  }
  if (session.leaderId === socket.id) {
    session.leaderId = null;
    commit(session);
  }
  io.to(sessionId).emit("room_stats", roomStats(session));
}

const httpServer = createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        status: "healthy",
        uptime: process.uptime(),
        activeSessions: sessions.size,
        connections: io.engine.clientsCount,
      }),
    );
    return;
  }
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ success: false, error: "not found", code: "NOT_FOUND", timestamp: now() }));
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: { threshold: 1024 },
  connectionStateRecovery: {},
  pingInterval: SOCKET_PING_INTERVAL,
  pingTimeout: SOCKET_PING_TIMEOUT,
  serveClient: false,
  cors: { origin: "*" },
});

io.on("connection", (socket) => {
  /** Replies to the requester, as an event and, when it passed a callback, as the ack. */
  const reply = (event, data, id, ack) => {
    const payload = withMeta(data, id);
    socket.emit(event, payload);
    if (typeof ack === "function") ack(payload);
  };
  /** Answers `error`; returns null, so a handler can `return fail(..)` where it wants a session. */
  const fail = (code, message, id, ack) => {
    reply("error", { code, message }, id, ack);
    return null;
  };
  /** The session of a member who leads it, or an error to the sender. */
  const ledSession = (id, ack) => {
    const session = sessions.get(socket.data.sessionId);
    if (!session) return fail("NOT_IN_SESSION", "join a session first", id, ack);
    if (session.leaderId !== socket.id) return fail("NOT_LEADER", "only the leader may do that", id, ack);
    return session;
  };
  /** `socket.on` for a contract event: an ack callback may come in place of the data. */
  const on = (event, handler) =>
    socket.on(event, (data, ack) => (typeof data === "function" ? handler({}, data) : handler(data ?? {}, ack)));
  /** A leader's command applied: acked with the state, as bandsync acks it. */
  const applied = (session, changed, id, ack) => {
    if (changed) commit(session);
    if (typeof ack === "function") ack(withMeta(stateOf(session), id));
  };

  if (socket.recovered && socket.data.sessionId) {
    // Rooms and `socket.data` came back with the connection (and the missed broadcasts
    // with it); so does the membership, and the leader seat if nobody took it meanwhile.
    let session = sessions.get(socket.data.sessionId);
    if (!session) {
      session = newSession(socket.data.sessionId);
      sessions.set(session.sessionId, session);
    }
    const role = socket.data.role === "leader" && session.leaderId === null ? "leader" : "follower";
    socket.data.role = role;
    session.members.set(socket.id, { clientId: socket.id, name: socket.data.name, role });
    if (role === "leader") {
      session.leaderId = socket.id;
      commit(session);
    }
    io.to(session.sessionId).emit("room_stats", roomStats(session));
  }

  on("join_session", (data, ack) => {
    const id = requestId(data);
    const sessionId = data?.sessionId;
    if (typeof sessionId !== "string" || !SESSION_ID.test(sessionId)) {
      return fail("INVALID_SESSION_ID", "sessionId must be 1-128 of A-Z a-z 0-9 . _ - /", id, ack);
    }
    if (socket.data.sessionId) leave(socket);
    let session = sessions.get(sessionId);
    if (!session) {
      session = newSession(sessionId);
      sessions.set(sessionId, session);
    }
    const name = typeof data.name === "string" ? data.name.slice(0, 64) : null;
    const role = data.role === "leader" && session.leaderId === null ? "leader" : "follower";
    session.members.set(socket.id, { clientId: socket.id, name, role });
    socket.data.sessionId = sessionId;
    socket.data.name = name;
    socket.data.role = role;
    socket.join(sessionId);
    if (role === "leader") {
      session.leaderId = socket.id;
      session.version += 1;
      socket.to(sessionId).emit("state_update", withMeta(stateOf(session)));
    }
    const members = [...session.members.values()];
    reply(
      "snapshot",
      {
        sessionId,
        clientId: socket.id,
        role,
        resumeToken: socket.id,
        leaderId: session.leaderId,
        members: members.slice(0, SNAPSHOT_MEMBER_LIMIT),
        transport: { ...session.transport },
        message: session.message,
        version: session.version,
        serverTime: now(),
        resumed: false,
        membersTruncated: members.length > SNAPSHOT_MEMBER_LIMIT,
        replayCount: 0,
      },
      id,
      ack,
    );
    io.to(sessionId).emit("room_stats", roomStats(session));
  });

  on("leave_session", (data, ack) => {
    leave(socket);
    if (typeof ack === "function") ack(withMeta({}, requestId(data)));
  });

  on("set_role", (data, ack) => {
    const id = requestId(data);
    const session = sessions.get(socket.data.sessionId);
    if (!session) return fail("NOT_IN_SESSION", "join a session first", id, ack);
    const member = session.members.get(socket.id);
    if (data?.role === "leader") {
      if (session.leaderId === socket.id) return applied(session, false, id, ack);
      if (session.leaderId !== null) return fail("LEADER_TAKEN", "the session has a leader", id, ack);
      session.leaderId = socket.id;
      member.role = socket.data.role = "leader";
    } else if (data?.role === "follower") {
      if (session.leaderId !== socket.id) return applied(session, false, id, ack);
      session.leaderId = null;
      member.role = socket.data.role = "follower";
    } else {
      return fail("INVALID_MESSAGE", "role must be leader or follower", id, ack);
    }
    applied(session, true, id, ack);
    io.to(session.sessionId).emit("room_stats", roomStats(session));
  });

  on("set_tempo", (data, ack) => {
    const id = requestId(data);
    const tempo = data?.tempo;
    if (typeof tempo !== "number" || !(tempo >= 20 && tempo <= 400)) {
      return fail("INVALID_TEMPO", "tempo must be 20 to 400", id, ack);
    }
    const session = ledSession(id, ack);
    if (!session) return;
    const changed = tempo !== session.transport.tempo;
    if (changed) {
      reanchor(session.transport, now());
      session.transport.tempo = tempo;
    }
    applied(session, changed, id, ack);
  });

  on("play", (data, ack) => {
    const id = requestId(data);
    const beat = data?.beat;
    if (beat !== undefined && beat !== null && (typeof beat !== "number" || !(beat >= 0) || !Number.isFinite(beat))) {
      return fail("INVALID_BEAT", "beat must be a number >= 0", id, ack);
    }
    const session = ledSession(id, ack);
    if (!session) return;
    const t = now();
    const hasBeat = typeof beat === "number";
    const changed = !session.transport.playing || hasBeat;
    if (changed) {
      if (hasBeat) session.transport.beat = beat;
      else reanchor(session.transport, t);
      session.transport.anchorTime = t;
      session.transport.playing = true;
    }
    applied(session, changed, id, ack);
  });

  on("pause", (data, ack) => {
    const session = ledSession(requestId(data), ack);
    if (!session) return;
    const changed = session.transport.playing;
    if (changed) {
      reanchor(session.transport, now());
      session.transport.playing = false;
    }
    applied(session, changed, requestId(data), ack);
  });

  on("seek", (data, ack) => {
    const id = requestId(data);
    const beat = data?.beat;
    if (typeof beat !== "number" || !(beat >= 0) || !Number.isFinite(beat)) {
      return fail("INVALID_BEAT", "beat must be a number >= 0", id, ack);
    }
    const session = ledSession(id, ack);
    if (!session) return;
    session.transport.beat = beat;
    session.transport.anchorTime = now();
    applied(session, true, id, ack);
  });

  on("update_message", (data, ack) => {
    const id = requestId(data);
    const session = sessions.get(socket.data.sessionId);
    if (!session) return fail("NOT_IN_SESSION", "join a session first", id, ack);
    const text = data?.text;
    if (typeof text !== "string") return fail("INVALID_MESSAGE", "text must be a string", id, ack);
    if ([...text].length > MESSAGE_MAX_CHARS) return fail("MESSAGE_TOO_LONG", "at most 1000 characters", id, ack);
    const changed = text !== session.message;
    session.message = text;
    applied(session, changed, id, ack);
  });

  on("sync_request", (data, ack) => {
    const id = requestId(data);
    const session = sessions.get(socket.data.sessionId);
    if (!session) return fail("NOT_IN_SESSION", "join a session first", id, ack);
    reply("sync_response", stateOf(session), id, ack);
  });

  on("heartbeat", (data, ack) => {
    const t1 = now();
    const t0 = typeof data?.t0 === "number" ? data.t0 : 0;
    reply("heartbeat_response", { t0, t1, t2: now() }, requestId(data), ack);
  });

  socket.on("disconnect", () => leave(socket, { disconnected: true }));
});

httpServer.listen(PORT, HOST, () => {
  const { address, port } = httpServer.address();
  console.log(`listening on ${address}:${port}`);
});

/** Stop cleanly on SIGTERM/SIGINT: the bench stops this process by its pid. */
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    for (const session of sessions.values()) stopTicks(session);
    io.close();
    process.exit(0);
  });
}
