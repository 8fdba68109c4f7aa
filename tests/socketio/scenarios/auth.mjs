// The authenticated mode (JWT_SECRET): a token in `auth` or `?token=` on the URL admits a
// socket to its session; a bad token in `auth` is a connect_error with `data.code`
// "UNAUTHORIZED" (a bad `?token=`: auth_bad_url.mjs).
// The tokens come from the Rust side: BANDSYNC_LEADER_TOKEN (leader of `session`) and
// BANDSYNC_FOLLOWER_TOKEN (follower of `session`).

import { ask, check, checkEq, closeAll, connect, io, join, once } from "../lib.mjs";

export async function run([url, session]) {
  const leaderToken = process.env.BANDSYNC_LEADER_TOKEN;
  const followerToken = process.env.BANDSYNC_FOLLOWER_TOKEN;
  check(leaderToken && followerToken && session, "tokens and session given");

  const ada = await connect(url, "ada", { auth: { token: leaderToken } });
  const lead = await join(ada, session, { role: "leader" });
  checkEq(lead.role, "leader", "a leader token leads");

  const bo = await connect(`${url}?token=${encodeURIComponent(followerToken)}`, "bo");
  const follow = await join(bo, session);
  checkEq(follow.role, "follower", "a follower token follows");
  const asLeader = await ask(bo, "join_session", { sessionId: session, role: "leader" });
  checkEq(asLeader.code, "UNAUTHORIZED", "a follower token asking for the leader seat");
  const down = await ask(ada, "set_role", { role: "follower" });
  checkEq(down.leaderId, null, "Ada steps down");
  const denied = await ask(bo, "set_role", { role: "leader" });
  checkEq(denied.code, "UNAUTHORIZED", "set_role leader with a follower token, the seat vacant");
  const other = await ask(bo, "join_session", { sessionId: `${session}-other` });
  checkEq(other.code, "UNAUTHORIZED", "a token for another session");

  const mallory = io(url, { auth: { token: "not.a.jwt" }, reconnection: false });
  const [error] = await once(mallory, "connect_error");
  checkEq(error.data?.code, "UNAUTHORIZED", `a bad token's connect_error (${error.message})`);
  mallory.disconnect();
  closeAll(ada, bo);
}
