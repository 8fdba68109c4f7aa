// With Redis, a follower's `update_message` (the contract lets any member send it) is
// applied, acked with the state, and heard by the leader on another instance; and messages
// written by followers while the leader is away are replayed to it when it recovers.

import { ask, checkEq, closeAll, connect, join, once, sessionName } from "../lib.mjs";

export async function run([one, two]) {
  const session = sessionName("cluster-message");
  const ada = await connect(one, "ada@1");
  const bo = await connect(two, "bo@2");
  await join(ada, session, { role: "leader" });
  await join(bo, session);
  const text = await ask(bo, "update_message", { text: "from instance 2" });
  checkEq(text.message, "from instance 2", `a follower's update_message (ack: ${JSON.stringify(text)})`);
  await ada.inbox.next("state_update", (s) => s.message === "from instance 2");

  ada.socket.io.uri = two;
  const reconnected = once(ada.socket, "connect", 15000);
  const mark = ada.inbox.mark();
  ada.socket.io.engine.close();
  await ask(bo, "update_message", { text: "while away" });
  await reconnected;
  checkEq(ada.socket.recovered, true, "recovered on instance 2");
  const missed = await ada.inbox.next("state_update", (s) => s.message === "while away", mark);
  checkEq(missed.data.replayed, true, "the missed message, replayed");
  closeAll(ada, bo);
}
