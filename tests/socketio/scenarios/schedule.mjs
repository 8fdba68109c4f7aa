// Scheduled changes and the chord sheet as a Socket.IO app meets them: a scheduled
// command's ack carries the state that announces it (`scheduled`), every member gets the
// announcement and, at its instant, the activation; a bad instant is INVALID_SCHEDULE as
// ack; `set_sheet` is acked with the state and every member gets the `sheet` event.

import { ask, check, checkEq, closeAll, connect, join, sessionName } from "../lib.mjs";

export async function run([url]) {
  const session = sessionName("schedule");
  const ada = await connect(url, "ada");
  const bo = await connect(url, "bo");
  await join(ada, session, { role: "leader" });
  await join(bo, session);

  // A tempo change 400 ms ahead (one machine: the server's clock is the client's).
  const now = (await ask(bo, "sync_request", {})).serverTime;
  const at = now + 400;
  let mark = bo.inbox.mark();
  const acked = await ask(ada, "set_tempo", { tempo: 90, at, id: "s1" });
  checkEq(acked.id, "s1", "the ack echoes the id");
  check(
    acked.scheduled?.at === at && acked.scheduled?.action === "set_tempo",
    `the ack carries the announcement: ${JSON.stringify(acked)}`,
  );
  checkEq(acked.transport.tempo, 120, "the old tempo holds until the instant");
  const id = acked.scheduled.id;
  check(Number.isSafeInteger(id), `the change id reads exactly in JavaScript: ${id}`);
  const announced = await bo.inbox.next("state_update", (s) => s.scheduled?.id === id, mark);
  const applied = await bo.inbox.next(
    "state_update",
    (s) => s.version === announced.data.version + 1,
    mark,
  );
  checkEq(
    [applied.data.transport.tempo, applied.data.transport.anchorTime, applied.data.scheduled ?? null],
    [90, at, null],
    "applied at its instant",
  );
  check(applied.data.serverTime >= at, "not before its instant");

  // An instant long past: INVALID_SCHEDULE, as ack.
  const refused = await ask(ada, "play", { at: now - 60000, id: "p1" });
  checkEq([refused.code, refused.id], ["INVALID_SCHEDULE", "p1"], "an instant long past");

  // A quantized start is acked with its announcement, on a bar of the paused timeline.
  const start = await ask(ada, "play", { quantum: 4 });
  check(start.scheduled?.action === "play" && start.scheduled.transport.playing, "quantized play");
  const bars = (start.scheduled.at - start.transport.anchorTime) / (4 * 60000 / 90);
  check(Math.abs(bars - Math.round(bars)) < 1e-6, `on a bar: ${bars}`);

  // The sheet: acked with the state after it, and every member gets it.
  mark = bo.inbox.mark();
  const text = "{title: Blue}\n[G]Hello";
  const set = await ask(ada, "set_sheet", { text, id: "h1" });
  checkEq(set.id, "h1", "set_sheet's ack echoes the id");
  const heard = await bo.inbox.next("sheet", () => true, mark);
  checkEq([heard.data.text, heard.data.version], [text, set.version], "the sheet reaches members");
  const same = await ask(ada, "set_sheet", { text });
  checkEq(same.version, set.version, "the same sheet again changes nothing");
  closeAll(ada, bo);
}
