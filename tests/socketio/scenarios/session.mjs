// Joining and the direct replies: `snapshot` as event and as ack, `room_stats`, `heartbeat`
// → `heartbeat_response`, `sync_request` → `sync_response`, `data.id` echoed as `id`.

import { ask, check, checkEq, closeAll, connect, sessionName } from "../lib.mjs";

const CLIENT_ID = /^c[0-9a-f]{16}$/;

export async function run([url]) {
  const session = sessionName("session");
  const ada = await connect(url, "ada");
  const bo = await connect(url, "bo");

  // Ada joins with an ack and a string id: the snapshot is the ack's argument and an event.
  const joined = await ask(ada, "join_session", { sessionId: session, name: "Ada", role: "leader", id: "j1" });
  check(CLIENT_ID.test(joined.clientId), `a server-made clientId, got ${joined.clientId}`);
  checkEq(joined.id, "j1", "the snapshot echoes data.id");
  checkEq(joined.role, "leader", "the vacant seat is granted");
  checkEq(joined.leaderId, joined.clientId, "leaderId");
  checkEq(joined.transport.tempo, 120, "a new session's tempo");
  checkEq(joined.transport.playing, false, "a new session is paused");
  check(typeof joined.timestamp === "number", `timestamp is server time: ${joined.timestamp}`);
  check(typeof joined.serverTime === "number" && typeof joined.version === "number", "serverTime and version");
  const event = await ada.inbox.next("snapshot");
  checkEq(event.data, joined, "the snapshot event carries what the ack did");
  check(typeof event.offset === "string" && event.offset.length > 0, `a versioned event's recovery offset: ${event.offset}`);

  // Bo joins without an ack, with a numeric id: the event only, the id as a number.
  bo.socket.emit("join_session", { sessionId: session, name: "Bo", role: "leader", id: 7 });
  const snapshot = (await bo.inbox.next("snapshot")).data;
  checkEq(snapshot.id, 7, "a numeric id comes back as the same number");
  checkEq(snapshot.role, "follower", "a join asking for a taken seat succeeds as follower");
  checkEq(snapshot.leaderId, joined.clientId, "Bo sees Ada lead");
  checkEq(
    snapshot.members.map((m) => m.name).sort(),
    ["Ada", "Bo"],
    "the snapshot lists both members",
  );

  // room_stats reaches both, with exact counts.
  for (const client of [ada, bo]) {
    const stats = (await client.inbox.next("room_stats", (s) => s.members === 2)).data;
    checkEq([stats.sessionId, stats.followers, stats.listeners], [session, 1, 0], `${client.name}'s room_stats`);
    checkEq(stats.leaderId, joined.clientId, `${client.name}'s room_stats leaderId`);
    check(stats.id === undefined, "broadcasts carry no id");
  }

  // heartbeat: t0 echoed, t1 <= t2, the id echoed, as ack and as event.
  const t0 = Date.now() + 0.25;
  const since = bo.inbox.mark();
  const beat = await ask(bo, "heartbeat", { t0, id: "hb-1" });
  checkEq([beat.t0, beat.id], [t0, "hb-1"], "heartbeat_response echoes t0 and the id");
  check(beat.t1 <= beat.t2, `t1 <= t2: ${beat.t1} ${beat.t2}`);
  const beatEvent = await bo.inbox.next("heartbeat_response", () => true, since);
  checkEq(beatEvent.data, beat, "the heartbeat_response event equals the ack");

  // sync_request with an ack: the state, with the id; also emitted as an event.
  const state = await ask(bo, "sync_request", { id: 42 });
  checkEq(
    [state.id, state.sessionId, state.leaderId, state.version, state.message],
    [42, session, joined.clientId, joined.version, ""],
    "sync_response",
  );
  const stateEvent = await bo.inbox.next("sync_response", (s) => s.id === 42, since);
  check(typeof stateEvent.offset === "string", "sync_response carries a recovery offset");

  // An emit with no data at all (`socket.emit('sync_request')`): answered, without an id.
  const bare = bo.inbox.mark();
  bo.socket.emit("sync_request");
  const plain = (await bo.inbox.next("sync_response", () => true, bare)).data;
  check(plain.id === undefined, `no id when none was sent: ${JSON.stringify(plain)}`);
  checkEq(plain.version, joined.version, "the same state");

  closeAll(ada, bo);
}
