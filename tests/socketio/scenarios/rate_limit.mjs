// The per-socket rate limit (the server runs with RATE_LIMIT_MAX_REQUESTS=5 per second and
// RATE_LIMIT_CLOSE_AFTER=3): heartbeats sent one after the other, each waiting for its ack,
// are answered until the quota is spent, then `rate_limit_exceeded` (`retryAfterMs`, the
// frame's id) RATE_LIMIT_CLOSE_AFTER times, and the next violation disconnects the socket:
// `disconnect` reason "io server disconnect", and no reconnection by itself.
// (A flood sent without waiting is rate_limit_flood.mjs.)

import { check, checkEq, connect, join, once, sessionName, sleep } from "../lib.mjs";

const CLOSE_AFTER = 3;

export async function run([url]) {
  const ada = await connect(url, "ada");
  await join(ada, sessionName("rate"));
  const disconnected = once(ada.socket, "disconnect");
  const replies = [];
  for (let i = 0; i < 30 && ada.socket.connected; i++) {
    try {
      replies.push(await ada.socket.timeout(5000).emitWithAck("heartbeat", { t0: i, id: `hb-${i}` }));
    } catch {
      break; // the ack of the frame that closed the socket never comes
    }
  }
  const [reason] = await disconnected;
  checkEq(reason, "io server disconnect", "the disconnect reason");

  const answered = replies.filter((r) => r.t0 !== undefined);
  const limited = replies.filter((r) => r.retryAfterMs !== undefined);
  check(answered.length >= 1, "heartbeats are answered until the quota is spent");
  checkEq(replies.length, answered.length + limited.length, "every ack is one or the other");
  checkEq(limited.length, CLOSE_AFTER, "rate_limit_exceeded acks before the disconnect");
  const firstLimited = replies.findIndex((r) => r.retryAfterMs !== undefined);
  check(firstLimited >= 1, "the quota comes first");
  for (const event of limited) {
    check(Number.isInteger(event.retryAfterMs) && event.retryAfterMs >= 1, `retryAfterMs: ${event.retryAfterMs}`);
    check(/^hb-\d+$/.test(event.id), `the dropped frame's id: ${event.id}`);
  }
  checkEq(ada.inbox.all("rate_limit_exceeded").length, CLOSE_AFTER, "rate_limit_exceeded events");

  await sleep(1500);
  check(!ada.socket.connected && !ada.socket.active, "no reconnection after a server disconnect");
  console.log(`rate limit: ${answered.length} answered, ${limited.length} refused, then disconnected`);
}
