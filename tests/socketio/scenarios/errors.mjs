// Refusals an app of the old server meets: invalid data (INVALID_TEMPO), an event the
// contract does not know (UNKNOWN_TYPE), data that is not an object (INVALID_MESSAGE), and a
// namespace other than `/` on a connection of its own (connect_error "Invalid namespace").
// The socket stays usable.

import { ask, check, checkEq, closeAll, connect, io, join, once, sessionName } from "../lib.mjs";

export async function run([url]) {
  const session = sessionName("errors");
  const ada = await connect(url, "ada");
  await join(ada, session, { role: "leader" });

  let mark = ada.inbox.mark();
  const tempo = await ask(ada, "set_tempo", { tempo: 9999, id: "bad-tempo" });
  checkEq([tempo.code, tempo.id], ["INVALID_TEMPO", "bad-tempo"], "tempo 9999 (ack)");
  await ada.inbox.next("error", (e) => e.code === "INVALID_TEMPO" && e.id === "bad-tempo", mark);

  mark = ada.inbox.mark();
  ada.socket.emit("no_such_event", { id: 5 });
  const unknown = (await ada.inbox.next("error", (e) => e.id === 5, mark)).data;
  checkEq(unknown.code, "UNKNOWN_TYPE", "an unknown event (event)");
  const unknownAck = await ask(ada, "launch_rockets", { id: "u2" });
  checkEq([unknownAck.code, unknownAck.id], ["UNKNOWN_TYPE", "u2"], "an unknown event (ack)");

  const notObject = await ask(ada, "set_tempo", "fast");
  checkEq(notObject.code, "INVALID_MESSAGE", "data that is not an object");
  const missing = await ask(ada, "seek", { id: "s1" });
  checkEq([missing.code, missing.id], ["INVALID_MESSAGE", "s1"], "seek without its beat");

  // Another namespace: CONNECT_ERROR, as a Socket.IO server answers one it does not serve.
  // (On a connection of its own: `forceNew`; the multiplexed case is namespace.mjs.)
  const admin = io(`${url}/admin`, { forceNew: true });
  const [error] = await once(admin, "connect_error");
  check(/Invalid namespace/.test(error.message), `connect_error message: ${error.message}`);
  checkEq(error.data?.code, "INVALID_NAMESPACE", "connect_error data.code");
  check(!admin.connected, "the /admin socket is not connected");
  admin.disconnect();

  // None of that disturbed the main socket or the session.
  const fine = await ask(ada, "set_tempo", { tempo: 121 });
  checkEq(fine.transport?.tempo, 121, "the socket still works");
  check(ada.socket.connected, "still connected");
  closeAll(ada);
}
