// A flood under the same rate limit as rate_limit.mjs: 20 heartbeats sent at once, as a
// misbehaving app would. The frames past the quota are answered `rate_limit_exceeded`, and
// the server disconnects the socket: the client must hear those and `41` ("io server
// disconnect"), not lose them to a reset connection ("transport close", after which it
// reconnects by itself).

import { check, checkEq, connect, join, onWebsocket, once, sessionName } from "../lib.mjs";

export async function run([url]) {
  const ada = await connect(url, "ada");
  await onWebsocket(ada);
  await join(ada, sessionName("flood"));
  const disconnected = once(ada.socket, "disconnect");
  const mark = ada.inbox.mark();
  for (let i = 0; i < 20; i++) ada.socket.emit("heartbeat", { t0: i, id: `hb-${i}` });
  const [reason] = await disconnected;
  const limited = ada.inbox.all("rate_limit_exceeded", mark).length;
  const answered = ada.inbox.all("heartbeat_response", mark).length;
  const heard = `${answered} heartbeat_response, ${limited} rate_limit_exceeded`;
  checkEq(reason, "io server disconnect", `the disconnect reason (heard ${heard})`);
  check(limited >= 1 && answered >= 1, `heard ${heard}`);
  ada.socket.disconnect();
}
