// The three ways a socket.io-client reaches the server: long-polling only, WebSocket only,
// and the default (long-polling, then the upgrade to WebSocket). Each joins one session, and
// changes from each reach the others.

import { ask, check, checkEq, closeAll, connect, io, join, once, sessionName, Inbox, fail, within } from "../lib.mjs";

/** The default client: connected, with the transport it opened on and its upgrade awaited. */
async function upgrading(url, session) {
  const socket = io(url);
  const inbox = new Inbox(socket, "upgrading");
  const client = { socket, inbox, name: "upgrading" };
  const opened = new Promise((resolve) => socket.io.once("open", () => resolve(socket.io.engine)));
  const engine = await within(opened, "open of the default client").catch((e) => fail(e.message));
  const first = engine.transport.name;
  const upgraded = once(engine, "upgrade");
  await once(socket, "connect");
  // Join at once, most likely still on long-polling: the session must survive the upgrade.
  const joinedOn = engine.transport.name;
  const snapshot = await join(client, session);
  const [transport] = await upgraded.catch((e) => fail(`the default client never upgraded: ${e.message}`));
  checkEq([first, transport.name, engine.transport.name], ["polling", "websocket", "websocket"], "default transports");
  return { client, snapshot, joinedOn };
}

export async function run([url]) {
  const session = sessionName("transports");
  const ws = await connect(url, "websocket-only", { transports: ["websocket"] });
  const polling = await connect(url, "polling-only", { transports: ["polling"] });
  checkEq(ws.socket.io.engine.transport.name, "websocket", "websocket-only transport");
  checkEq(polling.socket.io.engine.transport.name, "polling", "polling-only transport");
  const lead = await join(ws, session, { role: "leader" });
  await join(polling, session);
  const { client: upgraded, joinedOn } = await upgrading(url, session);
  const all = [ws, polling, upgraded];
  for (const c of all) await c.inbox.next("room_stats", (s) => s.members === 3);

  // The WebSocket-only leader changes the tempo; everyone hears it.
  let marks = all.map((c) => c.inbox.mark());
  const tempo = await ask(ws, "set_tempo", { tempo: 97 });
  checkEq(tempo.transport?.tempo, 97, "set_tempo's ack");
  for (const [i, c] of all.entries()) {
    await c.inbox.next("state_update", (s) => s.version === tempo.version && s.transport.tempo === 97, marks[i]);
  }

  // The long-polling follower writes the message; everyone hears it.
  marks = all.map((c) => c.inbox.mark());
  const message = await ask(polling, "update_message", { text: "from long-polling" });
  checkEq(message.version, tempo.version + 1, "update_message's ack");
  for (const [i, c] of all.entries()) {
    await c.inbox.next("state_update", (s) => s.message === "from long-polling", marks[i]);
  }

  // The upgraded client takes the seat once the leader steps down, and plays.
  await ask(ws, "set_role", { role: "follower" });
  const seat = await ask(upgraded, "set_role", { role: "leader" });
  check(seat.leaderId && seat.leaderId !== lead.clientId, `the upgraded client leads: ${JSON.stringify(seat)}`);
  marks = all.map((c) => c.inbox.mark());
  await ask(upgraded, "play", {});
  for (const [i, c] of all.entries()) {
    await c.inbox.next("scroll_tick", () => true, marks[i]);
  }

  checkEq(polling.socket.io.engine.transport.name, "polling", "the polling-only client stayed on long-polling");
  checkEq(upgraded.socket.io.engine.transport.name, "websocket", "the default client is on WebSocket");
  console.log(`the default client joined on ${joinedOn}, then upgraded`);
  closeAll(...all);
}
