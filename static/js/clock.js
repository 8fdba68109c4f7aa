// The page's estimate of the server clock (PROTOCOL.md section 7), pure: no DOM, no timers,
// so node can test it (tests/browser/unit/clock.test.mjs).
//
// Heartbeat round trips are filtered the way NTP's clock filter and Ableton Link do it: of
// the last WINDOW samples keep the ones with the smallest round trip (least queueing, so
// least room for an asymmetric delay), and take the median of their offsets, which one
// unlucky sample cannot drag. The same algorithm as the Rust client library's estimator.

/** Heartbeat samples kept: 32 s of history at the steady rate, 1.6 s during the burst. */
export const WINDOW = 32;
/** Heartbeat period during the burst after a join, so the estimate is good within 2 s. */
export const BURST_INTERVAL_MS = 50;
/** How long the burst lasts after a join. */
export const BURST_MS = 2000;
/** Heartbeat period after the burst: one frame a second, as the contract suggests. */
export const STEADY_INTERVAL_MS = 1000;
/** Passive samples (server timestamps on arrival) kept when no heartbeat is possible. */
export const PASSIVE_WINDOW = 64;

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/**
 * One heartbeat round trip: `t0` client send, `t1` server receive, `t2` server send, `t3`
 * client receive. Returns `{offset, rtt}` (ms; add `offset` to the client clock to get
 * server time), or null for times that are not finite numbers or a round trip that is
 * negative beyond clock resolution (a reply older than its request: nonsense, dropped).
 */
export function sampleFromHeartbeat(t0, t1, t2, t3) {
  if (![t0, t1, t2, t3].every(isNum)) return null;
  const rtt = (t3 - t0) - (t2 - t1);
  if (rtt < -1) return null;
  return { offset: ((t1 - t0) + (t2 - t3)) / 2, rtt: Math.max(0, rtt) };
}

/** How many of `n` samples the filter keeps: max(3, ceil(n/4)), all of them while n <= 3. */
export function keptCount(n) {
  return n <= 3 ? n : Math.max(3, Math.ceil(n / 4));
}

/**
 * The estimate from a window of samples: `{offset, error, rtt, kept}`, or null when there
 * are none. `offset` is the median offset of the `kept` samples with the smallest round
 * trips (the mean of the middle two when `kept` is even); `error` is the largest half round
 * trip among them, the bound the true offset lies within if the network is no worse than
 * those samples saw; `rtt` the smallest round trip.
 */
export function estimate(samples) {
  const n = samples.length;
  if (n === 0) return null;
  // Ties keep their arrival order (Array.prototype.sort is stable), so the result does not
  // depend on the engine.
  const best = samples.slice().sort((a, b) => a.rtt - b.rtt).slice(0, keptCount(n));
  const offsets = best.map((s) => s.offset).sort((a, b) => a - b);
  const k = offsets.length;
  const mid = Math.floor(k / 2);
  const offset = k % 2 === 1 ? offsets[mid] : (offsets[mid - 1] + offsets[mid]) / 2;
  const error = Math.max(...best.map((s) => s.rtt / 2));
  return { offset, error, rtt: best[0].rtt, kept: k };
}

/** The heartbeat delay `msSinceJoin` after a join: the burst first, then the steady rate. */
export function heartbeatDelay(msSinceJoin) {
  return msSinceJoin < BURST_MS ? BURST_INTERVAL_MS : STEADY_INTERVAL_MS;
}

/**
 * Heartbeat samples in a bounded window, and the passive fallback for SSE listeners (which
 * cannot send heartbeats): every server timestamp on arrival bounds the offset from below,
 * `serverTime - arrival = offset - latency`, so the largest recent one is the closest.
 */
export class ClockEstimator {
  constructor() {
    this.samples = [];
    this.passive = [];
    this.current = null;
  }

  /** Adds a heartbeat round trip; returns the new estimate (or the old one if invalid). */
  addHeartbeat(t0, t1, t2, t3) {
    const sample = sampleFromHeartbeat(t0, t1, t2, t3);
    if (!sample) return this.current;
    this.samples.push(sample);
    if (this.samples.length > WINDOW) this.samples.shift();
    this.current = { ...estimate(this.samples), source: 'heartbeat' };
    return this.current;
  }

  /** Adds a server timestamp seen at client time `arrival`; used until a heartbeat answers. */
  addPassive(serverTime, arrival) {
    if (!isNum(serverTime) || !isNum(arrival)) return this.current;
    this.passive.push(serverTime - arrival);
    if (this.passive.length > PASSIVE_WINDOW) this.passive.shift();
    if (!this.current || this.current.source !== 'heartbeat') {
      this.current = {
        offset: Math.max(...this.passive), error: null, rtt: null, kept: 0, source: 'passive',
      };
    }
    return this.current;
  }

  /** Forgets the heartbeat samples (a new join: the route, or the server, may differ). */
  resetHeartbeats() {
    this.samples = [];
    if (this.current && this.current.source === 'heartbeat') this.current = null;
  }
}
