// `scroll_tick` every 16 ms while playing, as a Socket.IO app hears them: seq +1 per tick
// (a few dropped under load at most), a mean interval near 16 ms, beats consistent with the
// tempo and the anchor of the `play`, and no tick after the `pause`'s state_update.
//
// The bounds are loose on purpose: this runs beside other tests on a busy 2-core machine.

import { ask, check, checkEq, closeAll, connect, join, onWebsocket, sessionName, sleep } from "../lib.mjs";

const INTERVAL_MS = 16;
const LISTEN_MS = 2000;

export async function run([url]) {
  const session = sessionName("ticks");
  const ada = await connect(url, "ada");
  // Long-polling carries only the latest tick of each poll (ticks are latest-value-wins):
  // count them once the default client has upgraded, as an app's would be.
  await onWebsocket(ada);
  await join(ada, session, { role: "leader" });
  const tempo = 150;
  await ask(ada, "set_tempo", { tempo });
  const start = ada.inbox.mark();
  const playing = await ask(ada, "play", { beat: 4 });
  check(playing.transport?.playing === true, `play's ack: ${JSON.stringify(playing)}`);
  // The first tick, then LISTEN_MS of them.
  await ada.inbox.next("scroll_tick", () => true, start);
  await sleep(LISTEN_MS);
  const ticks = ada.inbox.all("scroll_tick", start);

  const expected = LISTEN_MS / INTERVAL_MS;
  check(ticks.length >= 0.6 * expected, `${ticks.length} ticks in ${LISTEN_MS} ms, expected about ${expected}`);
  for (let i = 1; i < ticks.length; i++) {
    check(ticks[i].data.seq > ticks[i - 1].data.seq, `seq increases: ${ticks[i - 1].data.seq} then ${ticks[i].data.seq}`);
  }
  const first = ticks[0];
  const last = ticks[ticks.length - 1];
  const span = last.data.seq - first.data.seq + 1;
  const missing = span - ticks.length;
  check(missing <= Math.max(5, 0.08 * span), `${missing} of ${span} ticks missing`);
  const arrival = (last.at - first.at) / (ticks.length - 1);
  check(arrival >= 12 && arrival <= 24, `mean arrival interval ${arrival.toFixed(2)} ms`);
  const serverSpacing = (last.data.serverTime - first.data.serverTime) / (last.data.seq - first.data.seq);
  check(Math.abs(serverSpacing - INTERVAL_MS) < 0.5, `server time per seq ${serverSpacing.toFixed(3)} ms`);

  // Every tick's beat follows from the anchor `play` set: beat + elapsed x tempo / 60000.
  const { transport, version } = playing;
  for (const { data } of ticks) {
    checkEq([data.sessionId, data.tempo, data.playing, data.version], [session, tempo, true, version], "tick fields");
    check(data.id === undefined && data.timestamp === data.serverTime, "a tick's timestamp is its serverTime");
    const beat = transport.beat + ((data.serverTime - transport.anchorTime) * tempo) / 60000;
    check(Math.abs(data.beat - beat) < 1e-6, `tick ${data.seq}: beat ${data.beat}, expected ${beat}`);
  }
  check(last.data.beat > first.data.beat + 4, `the beat advances: ${first.data.beat} to ${last.data.beat}`);

  // Pause: no tick follows its state_update.
  const pauseMark = ada.inbox.mark();
  const paused = await ask(ada, "pause", {});
  const update = await ada.inbox.next("state_update", (s) => s.version === paused.version, pauseMark);
  await sleep(200);
  const after = ada.inbox.events.indexOf(update);
  const late = ada.inbox.all("scroll_tick", after + 1);
  checkEq(late.length, 0, "ticks after the pause's state_update");

  console.log(
    `ticks: ${ticks.length} in ${LISTEN_MS} ms, ${missing} missing, mean arrival ${arrival.toFixed(2)} ms`,
  );
  closeAll(ada);
}
