// The page's clock-offset estimator (static/js/clock.js) against its specification
// (PROTOCOL.md section 7): a window of 32 heartbeat samples, the K = max(3, ceil(n/4)) with
// the smallest round trip kept (all while n <= 3), their median offset, the largest half
// round trip among them as the error bound. Run: node --test tests/browser/unit/
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  ClockEstimator, estimate, heartbeatDelay, keptCount, sampleFromHeartbeat, WINDOW,
} from '../../../static/js/clock.js';

test('a round trip gives the NTP offset and the network round trip', () => {
  // PROTOCOL.md section 7's worked example.
  const s = sampleFromHeartbeat(1732190000000.0, 1732190000049.5, 1732190000049.8, 1732190000020.3);
  assert.ok(Math.abs(s.offset - 39.5) < 1e-6, `offset ${s.offset}`);
  assert.ok(Math.abs(s.rtt - 20.0) < 1e-6, `rtt ${s.rtt}`);
});

test('samples that are not numbers, or replies older than their request, are refused', () => {
  assert.equal(sampleFromHeartbeat(0, NaN, 1, 2), null);
  assert.equal(sampleFromHeartbeat(0, 1, 2, Infinity), null);
  assert.equal(sampleFromHeartbeat('0', 1, 2, 3), null);
  assert.equal(sampleFromHeartbeat(100, 50, 60, 90), null); // rtt = -20
  assert.equal(sampleFromHeartbeat(100, 50, 50, 99.5).rtt, 0); // within resolution: clamped
});

test('the filter keeps max(3, ceil(n/4)) samples, all of them up to 3', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 12, 13, 16, 17, 32].map(keptCount), [0, 1, 2, 3, 3, 3, 4, 4, 5, 8]);
});

test('the estimate is the median offset of the best round trips and their worst half rtt', () => {
  const samples = [
    { offset: 100, rtt: 50 }, // slow: out
    { offset: 10, rtt: 2 },
    { offset: 12, rtt: 4 },
    { offset: 11, rtt: 3 },
    { offset: -80, rtt: 40 }, // slow: out
  ];
  const e = estimate(samples);
  assert.equal(e.kept, 3);
  assert.equal(e.offset, 11);
  assert.equal(e.error, 2);
  assert.equal(e.rtt, 2);
  assert.equal(estimate([]), null);
});

test('an even number kept takes the mean of the two middle offsets', () => {
  // n = 13 keeps ceil(13/4) = 4.
  const samples = Array.from({ length: 13 }, (_, i) => ({ offset: i < 4 ? [5, 1, 9, 3][i] : 1000, rtt: i < 4 ? 1 : 10 + i }));
  const e = estimate(samples);
  assert.equal(e.kept, 4);
  assert.equal(e.offset, 4); // (3 + 5) / 2
  assert.equal(e.error, 0.5);
});

test('one or two samples: the median of what there is', () => {
  assert.equal(estimate([{ offset: 7, rtt: 3 }]).offset, 7);
  assert.equal(estimate([{ offset: 7, rtt: 3 }, { offset: 9, rtt: 1 }]).offset, 8);
  assert.equal(estimate([{ offset: 7, rtt: 3 }, { offset: 9, rtt: 1 }]).error, 1.5);
});

test('the window holds the last 32 samples: an old best sample ages out', () => {
  const c = new ClockEstimator();
  c.addHeartbeat(0, 1000, 1000, 0.2); // offset 999.9, rtt 0.2: the best ever
  for (let i = 0; i < WINDOW - 1; i++) c.addHeartbeat(0, 10, 10, 4); // offset 8, rtt 4
  assert.equal(c.samples.length, WINDOW);
  assert.equal(c.current.kept, 8);
  assert.equal(c.current.offset, 8); // the median of 8 resists the one outlier
  c.addHeartbeat(0, 10, 10, 4);
  assert.equal(c.samples.length, WINDOW);
  assert.ok(c.samples.every((s) => s.rtt === 4), 'the oldest sample left the window');
  assert.equal(c.current.source, 'heartbeat');
});

test('symmetric jitter: the estimate lands within the error bound of the truth', () => {
  // Deterministic pseudo-random one-way delays of 5 to 25 ms each way, true offset 123.4.
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const c = new ClockEstimator();
  let t = 0;
  for (let i = 0; i < 40; i++) {
    const up = 5 + 20 * rand();
    const down = 5 + 20 * rand();
    const t1 = t + up + 123.4;
    c.addHeartbeat(t, t1, t1 + 0.1, t + up + 0.1 + down);
    t += 50;
  }
  assert.ok(Math.abs(c.current.offset - 123.4) <= c.current.error, JSON.stringify(c.current));
});

test('without heartbeats the largest passive sample is the offset, until a heartbeat answers', () => {
  const c = new ClockEstimator();
  c.addPassive(1000, 990); // 10 - latency
  c.addPassive(2000, 1985); // 15 - latency: closer
  assert.equal(c.current.offset, 15);
  assert.equal(c.current.source, 'passive');
  c.addPassive(NaN, 5);
  assert.equal(c.current.offset, 15);
  c.addHeartbeat(0, 20, 20, 2);
  assert.equal(c.current.source, 'heartbeat');
  c.addPassive(5000, 4900); // 100: ignored once heartbeats answer
  assert.equal(c.current.offset, 19);
  c.resetHeartbeats();
  assert.equal(c.samples.length, 0);
  assert.equal(c.current, null);
});

test('heartbeats every 50 ms for 2 s after a join, then every second', () => {
  assert.equal(heartbeatDelay(0), 50);
  assert.equal(heartbeatDelay(1999), 50);
  assert.equal(heartbeatDelay(2000), 1000);
  assert.equal(heartbeatDelay(60000), 1000);
});
