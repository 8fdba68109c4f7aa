// Past RECOVERY_WINDOW_MS (the server runs with a short one) a dropped socket is not
// recovered: `socket.recovered === false`, a new `socket.id`, no session; its seat was freed
// when the window ended.

import { ask, check, checkEq, closeAll, connect, join, once, sessionName } from "../lib.mjs";

export async function run([url]) {
  const session = sessionName("expired");
  // Reconnection is off so the test, not a timer, decides when Ada comes back: after the
  // server has freed her seat.
  const ada = await connect(url, "ada", { reconnection: false });
  const bo = await connect(url, "bo");
  await join(ada, session, { role: "leader" });
  const boJoined = await join(bo, session);
  await ask(ada, "set_tempo", { tempo: 111 });
  const id = ada.socket.id;

  const mark = bo.inbox.mark();
  const disconnected = once(ada.socket, "disconnect");
  ada.socket.io.engine.close();
  await disconnected;
  // The window ends: the dropped leader's seat is freed.
  await bo.inbox.next("state_update", (s) => s.leaderId === null, mark);

  ada.socket.connect();
  await once(ada.socket, "connect");
  checkEq(ada.socket.recovered, false, "recovered after the window");
  check(ada.socket.id !== id, `a new socket id: ${ada.socket.id}`);
  const state = await ask(ada, "sync_request", {});
  checkEq(state.code, "NOT_IN_SESSION", "the late socket is in no session");
  const seat = await ask(bo, "set_role", { role: "leader" });
  checkEq(seat.leaderId, boJoined.clientId, "Bo can take the freed seat");
  closeAll(ada, bo);
}
