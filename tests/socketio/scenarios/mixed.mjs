// One session, two protocols: this Socket.IO follower and a native `/ws` client driven by
// tests/socketio.rs, which joined `session` as leader before starting this script. The
// steps interlock (each side waits for the other's change):
//   1. /ws sets tempo 133           → heard here
//   2. here: update_message         → /ws hears it
//   3. /ws steps down               → heard here (leaderId null)
//   4. here: set_role leader, set_tempo 90, play → /ws hears them, ticks flow here
//   5. /ws (now a follower) sends update_message "done" → heard here.

import { ask, check, checkEq, closeAll, connect, join } from "../lib.mjs";

export async function run([url, session]) {
  const sio = await connect(url, "socket.io");
  const snapshot = await join(sio, session, { name: "sio" });
  checkEq(snapshot.role, "follower", "the /ws client holds the seat");
  const wsLeader = snapshot.leaderId;
  check(wsLeader && wsLeader !== snapshot.clientId, `the /ws client leads: ${wsLeader}`);

  await sio.inbox.next("state_update", (s) => s.transport.tempo === 133 && s.leaderId === wsLeader);
  const text = await ask(sio, "update_message", { text: "hello from socket.io" });
  checkEq(text.message, "hello from socket.io", "update_message's ack");

  await sio.inbox.next("state_update", (s) => s.leaderId === null);
  const seat = await ask(sio, "set_role", { role: "leader" });
  checkEq(seat.leaderId, snapshot.clientId, "the Socket.IO client takes the seat");
  const tempo = await ask(sio, "set_tempo", { tempo: 90 });
  checkEq(tempo.transport?.tempo, 90, "set_tempo's ack");
  const mark = sio.inbox.mark();
  await ask(sio, "play", {});
  const tick = (await sio.inbox.next("scroll_tick", () => true, mark)).data;
  checkEq([tick.tempo, tick.playing], [90, true], "ticks of the Socket.IO leader's play");

  await sio.inbox.next("state_update", (s) => s.message === "done");
  closeAll(sio);
}
