// Helpers shared by the scenarios: the verdict (exit 0, or 1 with a FAIL line), bounded
// waits, and an inbox that records every event a socket hears so a scenario can wait for
// one that arrived before it started waiting.
//
// The sockets are made with `io(url, options)` from socket.io-client exactly as an app of the
// old Socket.IO server makes them; only timing options (reconnection delays) are ever set.

import { io } from "socket.io-client";

export { io };

/** How long any single expected event may take. */
export const WAIT_MS = 5000;

/** Prints a FAIL line and ends the process with status 1. */
export function fail(message) {
  console.log(`FAIL: ${message}`);
  process.exit(1);
}

/** Fails unless `condition` holds. */
export function check(condition, message) {
  if (!condition) fail(message);
}

/** Fails unless `actual` equals `expected` (compared as JSON). */
export function checkEq(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${message}: expected ${e}, got ${a}`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a failure naming `what` after `ms`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the arguments of the next `event` (a reserved one such as `connect`). */
export function once(emitter, event, ms = WAIT_MS) {
  return within(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    `'${event}'`,
    ms,
  );
}

/**
 * Every event a socket hears (`onAny`), in order, each as `{event, data, offset, at}`:
 * `data` is the one argument the server sends, `offset` the recovery offset that follows
 * it on versioned events.
 */
export class Inbox {
  constructor(socket, name) {
    this.name = name;
    this.events = [];
    this.waiters = new Set();
    socket.onAny((event, ...args) => {
      const entry = { event, data: args[0], offset: args[1], args, at: performance.now() };
      this.events.push(entry);
      for (const waiter of this.waiters) waiter();
    });
  }

  /** The position after the last event heard so far: pass it as `since`. */
  mark() {
    return this.events.length;
  }

  /** The events named `event` heard from `since` on. */
  all(event, since = 0) {
    return this.events.slice(since).filter((e) => e.event === event);
  }

  /**
   * The first `event` from position `since` on whose data satisfies `pred`, waiting for it
   * if it has not arrived yet.
   */
  async next(event, pred = () => true, since = 0, ms = WAIT_MS) {
    const find = () => {
      for (let i = since; i < this.events.length; i++) {
        const e = this.events[i];
        if (e.event === event && pred(e.data)) return e;
      }
      return undefined;
    };
    const found = find();
    if (found) return found;
    let waiter;
    const arrival = new Promise((resolve) => {
      waiter = () => {
        const e = find();
        if (e) resolve(e);
      };
      this.waiters.add(waiter);
    });
    try {
      return await within(arrival, `'${event}' on ${this.name}`, ms);
    } catch (error) {
      const heard = this.events.slice(since).map((e) => e.event).join(", ");
      const same = this.all(event, since).slice(-3).map((e) => JSON.stringify(e.data));
      fail(`${error.message} (heard since: ${heard || "nothing"}; the last '${event}': ${same.join(" ") || "none"})`);
    } finally {
      this.waiters.delete(waiter);
    }
  }
}

/**
 * A connected socket and its inbox. `options` go to `io()` unchanged; the scenarios keep
 * the defaults but for a short reconnection delay where a test would otherwise sleep.
 */
export async function connect(url, name, options = {}) {
  const socket = io(url, options);
  const inbox = new Inbox(socket, name);
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (error) =>
      reject(new Error(`${name}: connect_error ${error.message} ${JSON.stringify(error.data)}`)),
    );
  });
  try {
    await within(outcome, `connect of ${name}`);
  } catch (error) {
    fail(error.message);
  }
  return { socket, inbox, name };
}

/** Waits until `client` rides on WebSocket (the default client upgrades just after connecting). */
export async function onWebsocket(client) {
  const engine = client.socket.io.engine;
  if (engine.transport.name !== "websocket") {
    await once(engine, "upgrade").catch((e) => fail(`${client.name} never upgraded: ${e.message}`));
  }
}

/** `socket.emit(type, data)` with an acknowledgement: the ack's argument. */
export async function ask(client, type, data, ms = WAIT_MS) {
  try {
    return await client.socket.timeout(ms).emitWithAck(type, data);
  } catch (error) {
    fail(`${client.name}: no ack for '${type}' within ${ms} ms (${error.message})`);
  }
}

/** Joins `sessionId` (with an ack) and returns the snapshot. */
export async function join(client, sessionId, extra = {}) {
  const snapshot = await ask(client, "join_session", { sessionId, name: client.name, ...extra });
  check(snapshot && snapshot.sessionId === sessionId, `${client.name}: join answered ${JSON.stringify(snapshot)}`);
  return snapshot;
}

/** A session name no other scenario uses. */
export function sessionName(prefix) {
  const safe = prefix.replace(/[^A-Za-z0-9._-]+/g, "-");
  return `${safe}-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
}

/** Closes every socket given (ignoring ones already closed). */
export function closeAll(...clients) {
  for (const client of clients) client.socket.disconnect();
}
