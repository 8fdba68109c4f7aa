// Two bandsync instances on one Redis (started by tests/cluster_socketio.rs): Socket.IO
// clients on either share sessions and the leader rule, and a socket that drops recovers on
// the other instance: `socket.recovered`, the same id, its seat, and the state_updates it
// missed, replayed in order (1 → 2 as leader, then 2 → 1 as a follower missing changes).

import { ask, check, checkEq, closeAll, connect, join, once, sessionName } from "../lib.mjs";

async function shareSessions(one, two) {
  const session = sessionName("cluster");
  const ada = await connect(one, "ada@1");
  const bo = await connect(two, "bo@2");
  const lead = await join(ada, session, { role: "leader" });
  const follow = await join(bo, session, { role: "leader" });
  checkEq([follow.role, follow.leaderId], ["follower", lead.clientId], "instance 2 sees instance 1's leader");
  await ada.inbox.next("room_stats", (s) => s.members === 2);

  const tempo = await ask(ada, "set_tempo", { tempo: 144 });
  await bo.inbox.next("state_update", (s) => s.version === tempo.version && s.transport.tempo === 144);
  const refused = await ask(bo, "set_tempo", { tempo: 150 });
  checkEq(refused.code, "NOT_LEADER", "the leader rule holds across instances");
  const taken = await ask(bo, "set_role", { role: "leader" });
  checkEq(taken.code, "LEADER_TAKEN", "the seat is taken on another instance");

  // The seat passes to instance 2, whose changes reach instance 1.
  await ask(ada, "set_role", { role: "follower" });
  await bo.inbox.next("state_update", (s) => s.leaderId === null);
  const seat = await ask(bo, "set_role", { role: "leader" });
  checkEq(seat.leaderId, follow.clientId, "Bo takes the seat on instance 2");
  const play = await ask(bo, "play", { beat: 2 });
  await ada.inbox.next("state_update", (s) => s.version === play.version && s.transport.playing && s.leaderId === follow.clientId);
  await ada.inbox.next("scroll_tick", (t) => t.version === play.version);
  closeAll(ada, bo);
}

/** Drops `client` and points its Manager at `url` for the automatic reconnection. */
async function dropTowards(client, url) {
  client.socket.io.uri = url;
  const disconnected = once(client.socket, "disconnect");
  const reconnected = once(client.socket, "connect", 15000);
  const mark = client.inbox.mark();
  client.socket.io.engine.close();
  await disconnected;
  return { reconnected, mark };
}

/**
 * Checks the recovery, then waits for the rejoin to finish: the `room_stats` that counts
 * `members` again. (An event sent before it is refused NOT_IN_SESSION on another
 * instance: cluster_immediate.mjs.)
 */
async function checkRecovered(client, id, url, mark, members) {
  await client.inbox.next("room_stats", (s) => s.members === members, mark);
  checkEq(client.socket.recovered, true, `${client.name} recovered on ${url}`);
  checkEq(client.socket.id, id, `${client.name}'s socket.id on ${url}`);
  check(url.endsWith(`:${client.socket.io.engine.port}`), `reconnected to ${url} (port ${client.socket.io.engine.port})`);
}

async function recoverElsewhere(one, two) {
  const session = sessionName("cluster-recovery");
  const ada = await connect(one, "ada@1");
  const bo = await connect(two, "bo@2");
  const cy = await connect(one, "cy@1");
  const lead = await join(ada, session, { role: "leader" });
  const boJoined = await join(bo, session);
  await join(cy, session);
  const tempo = await ask(ada, "set_tempo", { tempo: 99 });
  await ada.inbox.next("state_update", (s) => s.version === tempo.version);
  const id = ada.socket.id;

  // 1 → 2, as the leader: the seat waits for her on the other instance.
  let drop = await dropTowards(ada, two);
  const during = await ask(bo, "set_role", { role: "leader" });
  checkEq(during.code, "LEADER_TAKEN", "a dropped leader keeps the seat within the window");
  await drop.reconnected;
  await checkRecovered(ada, id, two, drop.mark, 3);
  const again = await ask(ada, "set_tempo", { tempo: 98 });
  checkEq([again.leaderId, again.transport?.tempo], [lead.clientId, 98], `still the leader, now on instance 2 (${JSON.stringify(again)})`);
  await cy.inbox.next("state_update", (s) => s.transport.tempo === 98 && s.leaderId === lead.clientId);

  // 2 → 1, as a follower that misses two changes made on instance 2.
  await ask(ada, "set_role", { role: "follower" });
  await bo.inbox.next("state_update", (s) => s.leaderId === null);
  await ask(bo, "set_role", { role: "leader" });
  const before = await ask(ada, "sync_request", {});
  await ada.inbox.next("state_update", (s) => s.version === before.version);
  drop = await dropTowards(ada, one);
  const first = await ask(bo, "set_tempo", { tempo: 120 });
  const second = await ask(bo, "play", {});
  check(!ada.socket.connected, "the changes were made while Ada was away (the test's premise)");
  await drop.reconnected;
  await checkRecovered(ada, id, one, drop.mark, 3);
  await ada.inbox.next("state_update", (s) => s.version === second.version, drop.mark);
  const missed = ada.inbox.all("state_update", drop.mark).map((e) => [e.data.version, e.data.leaderId, e.data.replayed]);
  checkEq(
    missed,
    [
      [first.version, boJoined.clientId, true],
      [second.version, boJoined.clientId, true],
    ],
    "the missed state_updates, replayed in order",
  );
  const refused = await ask(ada, "set_tempo", { tempo: 97 });
  checkEq(refused.code, "NOT_LEADER", "back as the follower she was");
  closeAll(ada, bo, cy);
}

export async function run([one, two]) {
  check(one && two, "two instance URLs");
  await shareSessions(one, two);
  await recoverElsewhere(one, two);
}
