// The position model and the click's beat enumeration (static/js/timeline.js): a scheduled
// change applies exactly at its instant, and consecutive windows share no beat and miss none.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  barOf, beatsInWindow, MAX_BEATS_PER_WINDOW, positionAt, positionWithSchedule, readScheduled,
  readTransport, transportAt,
} from '../../../static/js/timeline.js';

const T0 = 1732190004012.871;
const play = (tempo, beat, anchorTime) => ({ playing: true, tempo, beat, anchorTime });

test('the contract\'s worked example: beat 16 at 128 bpm, 937.5 ms later is beat 18', () => {
  assert.ok(Math.abs(positionAt(play(128, 16, T0), T0 + 937.5) - 18) < 1e-9);
  assert.equal(positionAt({ playing: false, tempo: 128, beat: 16, anchorTime: T0 }, T0 + 5000), 16);
  assert.equal(positionAt(null, T0), 0);
});

test('transports and scheduled changes from the wire are checked', () => {
  assert.equal(readTransport({ playing: true, tempo: 'x', beat: 0, anchorTime: 1 }), null);
  assert.equal(readTransport({ playing: true, tempo: 0, beat: 0, anchorTime: 1 }), null);
  assert.deepEqual(readTransport({ playing: 1, tempo: 120, beat: 2, anchorTime: 3, extra: 4 }),
    { playing: true, tempo: 120, beat: 2, anchorTime: 3 });
  assert.equal(readScheduled({ at: 5, transport: null }), null);
  assert.equal(readScheduled(undefined), null);
  assert.equal(readScheduled({ id: 1, action: 'play', at: 10, transport: play(120, 0, 10) }).at, 10);
});

test('the scheduled transport holds from its instant on, the old one before', () => {
  const before = play(120, 0, T0);
  const at = T0 + 32000; // beat 64 at 120 bpm
  const sc = { at, transport: play(140, 64, at) };
  assert.equal(transportAt(before, sc, at - 0.001), before);
  assert.equal(transportAt(before, sc, at), sc.transport);
  // No jump in position across the change.
  assert.ok(Math.abs(positionWithSchedule(before, sc, at - 1e-6) - 64) < 1e-6);
  assert.ok(Math.abs(positionWithSchedule(before, sc, at + 60000 / 140) - 65) < 1e-5);
});

test('consecutive windows give every beat once, at its time', () => {
  const tr = play(150, 0.5, T0);
  const beats = [];
  for (let t = T0; t < T0 + 10000; t += 25) beats.push(...beatsInWindow(tr, null, t, t + 25));
  const numbers = beats.map((b) => b.beat);
  assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
  assert.equal(numbers.length, 25); // from 0.5, 25 beats in 10 s: 1 to 25
  for (const b of beats) assert.ok(Math.abs(b.serverTime - (T0 + (b.beat - 0.5) * 400)) < 1e-6);
});

test('a tempo change quantized to bar 17 puts beat 64 exactly at its instant, once', () => {
  const before = play(120, 0, T0);
  // The instant as a server would compute it, with the new segment anchored a hair off the
  // whole beat, as floating point may leave it.
  const at = T0 + (64 - 0) * 60000 / 120;
  for (const anchoredBeat of [64, 64 - 1e-9, 64 + 1e-9]) {
    const sc = { at, transport: play(140, anchoredBeat, at) };
    const beats = [];
    for (let t = at - 2000; t < at + 2000; t += 25) beats.push(...beatsInWindow(before, sc, t, t + 25));
    const numbers = beats.map((b) => b.beat);
    assert.deepEqual(numbers, [60, 61, 62, 63, 64, 65, 66, 67, 68], `anchored at ${anchoredBeat}`);
    const at64 = beats.find((b) => b.beat === 64);
    assert.ok(Math.abs(at64.serverTime - at) < 1e-3, `beat 64 at ${at64.serverTime - at} ms from the instant`);
    const gaps = beats.slice(1).map((b, i) => b.serverTime - beats[i].serverTime);
    for (const g of gaps.slice(0, 4)) assert.ok(Math.abs(g - 500) < 1e-3, `gap ${g} before`);
    for (const g of gaps.slice(4)) assert.ok(Math.abs(g - 60000 / 140) < 1e-3, `gap ${g} after`);
  }
});

test('paused: no beats; a scheduled play from a pause starts on its instant', () => {
  const paused = { playing: false, tempo: 100, beat: 8, anchorTime: T0 };
  assert.deepEqual(beatsInWindow(paused, null, T0, T0 + 10000), []);
  const sc = { at: T0 + 1000, transport: play(100, 8, T0 + 1000) };
  const beats = beatsInWindow(paused, sc, T0, T0 + 2300);
  assert.deepEqual(beats.map((b) => b.beat), [8, 9, 10]);
  assert.equal(beats[0].serverTime, T0 + 1000);
  // A scheduled pause: the beats stop at its instant.
  const stop = { at: T0 + 1000, transport: { playing: false, tempo: 60, beat: 1, anchorTime: T0 + 1000 } };
  assert.deepEqual(beatsInWindow(play(60, 0, T0), stop, T0, T0 + 5000).map((b) => b.beat), [0]);
});

test('a window is bounded however wide it is, and nonsense windows are empty', () => {
  assert.equal(beatsInWindow(play(400, 0, T0), null, T0, T0 + 3.6e6).length, MAX_BEATS_PER_WINDOW);
  assert.deepEqual(beatsInWindow(play(120, 0, T0), null, T0 + 10, T0), []);
  assert.deepEqual(beatsInWindow(play(120, 0, T0), null, NaN, T0), []);
  assert.deepEqual(beatsInWindow(null, null, T0, T0 + 1000), []);
});

test('bars count from 1, a boundary belongs to the bar it starts', () => {
  assert.equal(barOf(0, 4), 1);
  assert.equal(barOf(3.99, 4), 1);
  assert.equal(barOf(64, 4), 17);
  assert.equal(barOf(64 - 1e-9, 4), 17);
  assert.equal(barOf(6, 3), 3);
});
