// Leader rules as the old server's apps meet them: a follower's `set_tempo` is NOT_LEADER and
// a taken seat LEADER_TAKEN (event and ack), the leader's commands reach every member as
// `state_update` with version + 1 and their ack carries the applied state, and the seat
// passes on when the leader steps down.

import { ask, check, checkEq, closeAll, connect, join, sessionName } from "../lib.mjs";

/** Waits for `error` `code` carrying `id` on `client` (from `since`); returns it. */
async function errorEvent(client, code, id, since) {
  return (await client.inbox.next("error", (e) => e.code === code && e.id === id, since)).data;
}

export async function run([url]) {
  const session = sessionName("leader");
  const ada = await connect(url, "ada");
  const bo = await connect(url, "bo");
  const cy = await connect(url, "cy");
  const leader = await join(ada, session, { role: "leader" });
  const boJoined = await join(bo, session);
  await join(cy, session);
  checkEq(leader.role, "leader", "Ada leads");

  // A follower may not change the transport: NOT_LEADER as ack and as event.
  let since = bo.inbox.mark();
  const refused = await ask(bo, "set_tempo", { tempo: 130, id: "t1" });
  checkEq([refused.code, refused.id], ["NOT_LEADER", "t1"], "a follower's set_tempo");
  check(typeof refused.message === "string" && typeof refused.timestamp === "number", "error fields");
  await errorEvent(bo, "NOT_LEADER", "t1", since);

  // The seat is taken: LEADER_TAKEN, and nothing changed.
  since = bo.inbox.mark();
  const taken = await ask(bo, "set_role", { role: "leader", id: "r1" });
  checkEq([taken.code, taken.id], ["LEADER_TAKEN", "r1"], "set_role leader while held");
  await errorEvent(bo, "LEADER_TAKEN", "r1", since);

  // The leader's commands: each acked with the applied state, and a state_update with
  // version + 1 reaches every member, the sender included.
  const steps = [
    ["set_tempo", { tempo: 132 }, (s) => s.transport.tempo === 132],
    ["play", {}, (s) => s.transport.playing === true],
    ["pause", {}, (s) => s.transport.playing === false],
    ["seek", { beat: 8 }, (s) => s.transport.beat === 8],
    ["update_message", { text: "bridge, bar 17" }, (s) => s.message === "bridge, bar 17"],
  ];
  const fence = ada.inbox.mark();
  let version = (await ask(bo, "sync_request", {})).version;
  for (const [type, data, applied] of steps) {
    const marks = [ada, bo, cy].map((c) => c.inbox.mark());
    const state = await ask(ada, type, { ...data, id: `${type}-1` });
    checkEq([state.version, state.sessionId], [version + 1, session], `${type}'s ack carries the state after it`);
    check(applied(state), `${type}'s ack shows its effect: ${JSON.stringify(state)}`);
    checkEq(state.id, `${type}-1`, `${type}'s ack echoes the id`);
    for (const [i, client] of [ada, bo, cy].entries()) {
      const update = await client.inbox.next("state_update", (s) => s.version === version + 1, marks[i]);
      check(applied(update.data), `${client.name} sees ${type}: ${JSON.stringify(update.data)}`);
      check(update.data.id === undefined, "a state_update carries no id");
      check(typeof update.offset === "string", "a state_update carries a recovery offset");
      const earlier = client.inbox.all("state_update", marks[i]).filter((s) => s.data.version <= version);
      checkEq(earlier.length, 0, `${client.name} gets no stale state_update`);
    }
    version += 1;
  }
  // The state went to the ack only: the one sync_response event is the fence's own.
  await ask(ada, "sync_request", { id: "fence" });
  const events = ada.inbox.all("sync_response", fence).map((e) => e.data.id);
  checkEq(events, ["fence"], "a command's state goes to its ack only, never as a sync_response event");

  // A command that changes nothing is acked with the state, version unchanged.
  const same = await ask(ada, "set_tempo", { tempo: 132 });
  checkEq(same.version, version, "set_tempo to the current tempo changes nothing");

  // The leader steps down; the seat passes to Bo.
  const down = await ask(ada, "set_role", { role: "follower" });
  checkEq([down.leaderId, down.version], [null, version + 1], "stepping down frees the seat");
  const up = await ask(bo, "set_role", { role: "leader" });
  checkEq([up.leaderId, up.version], [boJoined.clientId, version + 2], "Bo takes the seat");
  const adaNow = await ask(ada, "set_tempo", { tempo: 140 });
  checkEq(adaNow.code, "NOT_LEADER", "Ada no longer leads");
  const boNow = await ask(bo, "set_tempo", { tempo: 140 });
  checkEq([boNow.transport?.tempo, boNow.version], [140, version + 3], "Bo leads");
  await cy.inbox.next("state_update", (s) => s.version === version + 3 && s.transport.tempo === 140);

  closeAll(ada, bo, cy);
}
