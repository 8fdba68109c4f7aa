// Connection state recovery as socket.io-client 4.6+ does it by itself: a leader whose
// connection drops (the engine closed, or its TCP connection destroyed without a close)
// reconnects within RECOVERY_WINDOW_MS with `socket.recovered === true`, the same
// `socket.id`, its seat, and the `state_update`s it missed, replayed in order. A client that
// calls `socket.disconnect()` leaves at once: its seat is free, and `socket.connect()` makes
// a new socket.

import { ask, check, checkEq, closeAll, connect, join, once, onWebsocket, sessionName } from "../lib.mjs";

/** A leader drops by `drop(socket)`; a follower changes the message twice meanwhile. */
async function recovers(url, label, drop) {
  const session = sessionName(label);
  const ada = await connect(url, `ada (${label})`);
  const bo = await connect(url, `bo (${label})`);
  await onWebsocket(ada);
  const lead = await join(ada, session, { role: "leader" });
  await join(bo, session);
  const tempo = await ask(ada, "set_tempo", { tempo: 101 });
  // Ada has heard that version: it is her recovery offset.
  await ada.inbox.next("state_update", (s) => s.version === tempo.version);
  const id = ada.socket.id;
  check(ada.socket.recovered === false, "a first connection is not a recovery");

  const disconnected = once(ada.socket, "disconnect");
  const reconnected = once(ada.socket, "connect", 15000);
  const mark = ada.inbox.mark();
  drop(ada.socket);
  const [reason] = await disconnected;
  const first = await ask(bo, "update_message", { text: `${label}: one` });
  const second = await ask(bo, "update_message", { text: `${label}: two` });
  check(!ada.socket.connected, `${label}: Bo's changes were done before Ada reconnected (the test's premise)`);

  await reconnected;
  checkEq(ada.socket.recovered, true, `${label}: socket.recovered after a drop (${reason})`);
  checkEq(ada.socket.id, id, `${label}: the same socket.id`);
  await ada.inbox.next("state_update", (s) => s.version === second.version, mark);
  const missed = ada.inbox.all("state_update", mark).map((e) => [e.data.version, e.data.message, e.data.replayed]);
  checkEq(
    missed,
    [
      [tempo.version + 1, `${label}: one`, true],
      [tempo.version + 2, `${label}: two`, true],
    ],
    `${label}: the missed state_updates, replayed in order`,
  );
  checkEq([first.version, second.version], [tempo.version + 1, tempo.version + 2], "Bo's acks");

  // Still the leader: her next command is applied, and Bo hears it.
  const again = await ask(ada, "set_tempo", { tempo: 102 });
  checkEq([again.transport?.tempo, again.leaderId, again.version], [102, lead.clientId, second.version + 1], `${label}: Ada still leads`);
  await bo.inbox.next("state_update", (s) => s.transport.tempo === 102);
  console.log(`${label}: dropped (${reason}), recovered as ${id}, ${missed.length} events replayed`);
  closeAll(ada, bo);
}

/** `socket.disconnect()` leaves the session at once; `socket.connect()` is a new socket. */
async function leavesOnPurpose(url) {
  const session = sessionName("disconnect");
  const ada = await connect(url, "ada (disconnect)");
  const bo = await connect(url, "bo (disconnect)");
  await join(ada, session, { role: "leader" });
  const boJoined = await join(bo, session);
  const id = ada.socket.id;
  const mark = bo.inbox.mark();
  const left = performance.now();
  ada.socket.disconnect();
  await bo.inbox.next("state_update", (s) => s.leaderId === null, mark);
  const freedAfter = performance.now() - left;
  const seat = await ask(bo, "set_role", { role: "leader" });
  checkEq(seat.leaderId, boJoined.clientId, "Bo takes the seat Ada left");
  await bo.inbox.next("room_stats", (s) => s.members === 1, mark);

  ada.socket.connect();
  await once(ada.socket, "connect");
  checkEq(ada.socket.recovered, false, "a socket disconnected on purpose is not recovered");
  check(ada.socket.id !== id, `a new socket id after disconnect(): ${ada.socket.id}`);
  const state = await ask(ada, "sync_request", {});
  checkEq(state.code, "NOT_IN_SESSION", "the new socket is in no session");
  console.log(`disconnect(): the seat was free ${freedAfter.toFixed(1)} ms later`);
  closeAll(ada, bo);
}

export async function run([url]) {
  await recovers(url, "engine closed", (socket) => socket.io.engine.close());
  await recovers(url, "TCP destroyed", (socket) => socket.io.engine.transport.ws._socket.destroy());
  await leavesOnPurpose(url);
}
