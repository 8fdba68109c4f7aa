// A socket recovered on another instance is back in its session when `connect` fires, as
// on one instance: its first event right after the reconnection (here the leader's
// set_tempo) is applied, not refused NOT_IN_SESSION while the rejoin is still loading.

import { ask, checkEq, closeAll, connect, join, once, sessionName } from "../lib.mjs";

export async function run([one, two]) {
  const session = sessionName("cluster-immediate");
  const ada = await connect(one, "ada@1");
  const bo = await connect(two, "bo@2");
  const lead = await join(ada, session, { role: "leader" });
  await join(bo, session);
  await ask(ada, "set_tempo", { tempo: 99 });
  ada.socket.io.uri = two;
  const reconnected = once(ada.socket, "connect", 15000);
  ada.socket.io.engine.close();
  await reconnected;
  checkEq(ada.socket.recovered, true, "recovered on instance 2");
  const tempo = await ask(ada, "set_tempo", { tempo: 98 });
  checkEq([tempo.leaderId, tempo.transport?.tempo], [lead.clientId, 98], `the first event after recovery (${JSON.stringify(tempo)})`);
  closeAll(ada, bo);
}
