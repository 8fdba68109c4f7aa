// The click's audio-clock mapping (static/js/click.js) against PROTOCOL.md section 6,
// "Steadying the pair": a low quantile of the last MAPPING_WINDOW output timestamps, so a
// burst of late audio callbacks does not move the clicks, and a lasting move of the audio
// clock is followed within one window. Run: node --test tests/browser/unit/
import test from 'node:test';
import assert from 'node:assert/strict';
import { Click, MAPPING_WINDOW } from '../../../static/js/click.js';

/** A click with a still timeline, a zero clock offset and 4/4. */
const newClick = () => new Click({ timeline: () => ({}), clockOffset: () => 0, beatsPerBar: () => 4 });

/** A click whose audio context reports `performanceTime - contextTime * 1000 = next()`. */
function clickWithMapping(next) {
  const click = newClick();
  let contextTime = 1;
  click.ctx = {
    getOutputTimestamp() {
      contextTime += 0.025;
      return { contextTime, performanceTime: next() + contextTime * 1000 };
    },
  };
  return click;
}

/** The mapping the click uses now, ms (client time of context time 0, from timeOrigin). */
const mapping = (click) => click.contextToClient(0) - performance.timeOrigin;

test('a burst of late callbacks, even most of the window, does not move the mapping', () => {
  let late = false;
  const click = clickWithMapping(() => (late ? 1040 : 1000));
  for (let i = 0; i < MAPPING_WINDOW; i++) click.sampleMapping();
  assert.equal(mapping(click), 1000);
  // Three quarters of the window late by 40 ms (a busy machine starving the audio thread):
  // a median would follow them; the clicks must not.
  late = true;
  for (let i = 0; i < (MAPPING_WINDOW * 3) / 4; i++) click.sampleMapping();
  assert.equal(mapping(click), 1000);
});

test('a lasting move of the audio clock is followed within one window', () => {
  let value = 1000;
  const click = clickWithMapping(() => value);
  for (let i = 0; i < MAPPING_WINDOW; i++) click.sampleMapping();
  value = 1007; // the output device re-synchronised 7 ms later
  for (let i = 0; i < MAPPING_WINDOW; i++) click.sampleMapping();
  assert.equal(mapping(click), 1007);
  value = 995; // and earlier: followed sooner, as late samples are the only noise expected
  for (let i = 0; i < MAPPING_WINDOW / 4; i++) click.sampleMapping();
  assert.equal(mapping(click), 995);
});

test('one early sample does not move the mapping either', () => {
  let n = 0;
  const click = clickWithMapping(() => (n++ === 10 ? 980 : 1000));
  for (let i = 0; i < MAPPING_WINDOW; i++) click.sampleMapping();
  assert.equal(mapping(click), 1000);
});

test('without samples the mapping falls back to currentTime and the reported latency', () => {
  const click = newClick();
  click.ctx = { currentTime: 2, outputLatency: 0.03 };
  const before = performance.timeOrigin + performance.now();
  const heard = click.contextToClient(2);
  const after = performance.timeOrigin + performance.now();
  assert.ok(heard >= before + 30 - 1e-6 && heard <= after + 30 + 1e-6, `heard ${heard - before}`);
});
