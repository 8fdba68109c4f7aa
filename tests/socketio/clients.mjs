// Runs one scenario of socket.io-client apps against bandsync's /socket.io/ endpoint:
//
//   node clients.mjs <scenario> <url> [<url of a second instance>] [<session>]
//
// Each scenario lives in scenarios/<scenario>.mjs and exports `run(args)`. The process
// ends 0 with a PASS line, or 1 with a FAIL line (an unmet expectation, a thrown error, or
// the whole scenario outliving BOUND_MS). tests/socketio.rs and tests/cluster_socketio.rs
// start the servers and run these.

import { fail } from "./lib.mjs";

/** The whole scenario's bound; the Rust side's own backstop is longer. */
const BOUND_MS = 40000;

const SCENARIOS = new Set([
  "session",
  "leader",
  "ticks",
  "transports",
  "recovery",
  "recovery_expired",
  "errors",
  "namespace",
  "rate_limit",
  "rate_limit_flood",
  "auth",
  "auth_bad_url",
  "mixed",
  "cluster",
  "cluster_message",
  "cluster_immediate",
  "schedule",
]);

const [scenario, ...args] = process.argv.slice(2);
if (!SCENARIOS.has(scenario) || args.length === 0) {
  fail(`usage: node clients.mjs <${[...SCENARIOS].join("|")}> <url> [more args]`);
}

setTimeout(() => fail(`scenario '${scenario}' did not finish within ${BOUND_MS} ms`), BOUND_MS);
process.on("unhandledRejection", (error) => fail(`unhandled rejection: ${error?.stack ?? error}`));
process.on("uncaughtException", (error) => fail(`uncaught exception: ${error?.stack ?? error}`));

const started = performance.now();
const { run } = await import(`./scenarios/${scenario}.mjs`);
try {
  await run(args);
} catch (error) {
  fail(`${scenario}: ${error?.stack ?? error}`);
}
console.log(`PASS ${scenario} in ${Math.round(performance.now() - started)} ms`);
process.exit(0);
