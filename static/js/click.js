// The metronome click, sounded with Web Audio on the shared timeline (PROTOCOL.md section 6,
// "Sounding a click").
//
// Timers in a page are late by whole milliseconds and more, so the click is never played
// "now": every SCHEDULER_MS a scheduler asks the timeline which beats fall in the next
// LOOKAHEAD_MS of server time and hands each to the audio clock with `start(when)`, which
// is sample-accurate. The mapping between the two clocks:
//
//   server time  = client time + clock offset                 (heartbeats, clock.js)
//   client time  = timeOrigin + performanceTime + (c - contextTime) * 1000
//                  for context time c, from ctx.getOutputTimestamp()
//
// getOutputTimestamp pairs the context time of the frame the output device is playing
// with the moment it plays, so a click started at c is heard at that client time: the
// device's output latency is in the pair already. Where the pair is not available (an
// older browser, or a context that has not rendered yet) the mapping falls back to
// currentTime ↔ performance.now(), and then ctx.outputLatency (else ctx.baseLatency) is
// added explicitly. On top comes the member's calibration, the latency the browser does
// not know of (a Bluetooth headset, a mixer): the click is started that much earlier.

import { beatsInWindow } from './timeline.js';

export const SCHEDULER_MS = 25;
export const LOOKAHEAD_MS = 150;
/** Clicks remembered for bandsyncDebug (tests, curious people). */
export const DEBUG_CLICKS = 256;
/** Calibration range, ms: more than any headset's latency, less than a beat at 20 bpm. */
export const MAX_CALIBRATION_MS = 1000;
/** Mapping samples kept: the audio callback is late by a varying amount, rarely early. */
export const MAPPING_WINDOW = 40;
/**
 * Which of the kept samples, in order, is the mapping: a low one, because a late callback
 * only ever pushes a sample up. Not the lowest, which one early sample would move.
 */
export const MAPPING_QUANTILE = 0.1;
/** Starting a click later than this before its time is pointless: it would sound late. */
const MIN_LEAD_S = 0.002;
const CLICK_S = 0.03;
const CALIBRATION_KEY = 'bandsync.clickCalibrationMs';

/** The stored calibration, bounded; 0 when none or unreadable. */
export function loadCalibration(storage) {
  try {
    const v = Number(storage.getItem(CALIBRATION_KEY));
    return Number.isFinite(v) ? Math.max(-MAX_CALIBRATION_MS, Math.min(MAX_CALIBRATION_MS, v)) : 0;
  } catch (_) {
    return 0;
  }
}

export function saveCalibration(storage, ms) {
  try {
    storage.setItem(CALIBRATION_KEY, String(ms));
  } catch (_) {
    // Private mode or a full store: the value lasts for this page only.
  }
}

/**
 * The click. `timeline()` returns `{transport, scheduled, version}` as the page holds it,
 * `clockOffset()` the estimated server-minus-client offset (ms), `beatsPerBar()` the meter.
 */
export class Click {
  constructor({ timeline, clockOffset, beatsPerBar }) {
    this.timeline = timeline;
    this.clockOffset = clockOffset;
    this.beatsPerBar = beatsPerBar;
    this.ctx = null;
    this.timer = null;
    this.enabled = false;
    this.calibrationMs = 0;
    /** Server time up to which beats were handed to the audio clock. */
    this.scheduledUntil = null;
    this.version = null;
    /** Started but not yet sounded: {node, gain, serverTime} each, to cancel on a change. */
    this.pending = [];
    /** The last DEBUG_CLICKS clicks: {beat, accent, serverTime, contextTime}. */
    this.clicks = [];
    /** (performanceTime - contextTime * 1000) of recent output timestamps, ms. */
    this.mapping = [];
  }

  /** Turns the click on; must run in a user gesture the first time (autoplay policy). */
  async enable() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) throw new Error('this browser has no Web Audio');
      this.ctx = new Ctx({ latencyHint: 'interactive' });
    }
    this.enabled = true;
    this.scheduledUntil = null;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), SCHEDULER_MS);
    if (this.ctx.state !== 'running') await this.ctx.resume();
    this.tick();
  }

  disable() {
    this.enabled = false;
    clearInterval(this.timer);
    this.timer = null;
    this.cancelFrom(-Infinity);
    if (this.ctx) this.ctx.suspend().catch(() => {});
  }

  /** Output latency the browser reports, s (0 where it reports none). */
  reportedLatency() {
    const ctx = this.ctx;
    if (!ctx) return 0;
    const v = Number.isFinite(ctx.outputLatency) && ctx.outputLatency > 0
      ? ctx.outputLatency : ctx.baseLatency;
    return Number.isFinite(v) && v > 0 ? v : 0;
  }

  /**
   * Samples the audio-to-performance mapping. The output timestamp comes from the audio
   * callback, which runs late by a varying amount and so makes the pair look later than it
   * is. A low quantile of the recent pairs (MAPPING_QUANTILE) steadies it; a median
   * followed the late ones whenever the machine was busy for half the window, and every
   * move of the mapping moves the clicks handed over after it (measured: gaps between
   * clicks off by 1 to 9 ms in Chromium on a loaded machine).
   */
  sampleMapping() {
    const ctx = this.ctx;
    if (!ctx || typeof ctx.getOutputTimestamp !== 'function') return;
    const ts = ctx.getOutputTimestamp();
    if (!ts || !(ts.performanceTime > 0) || !(ts.contextTime > 0)) return;
    this.mapping.push(ts.performanceTime - ts.contextTime * 1000);
    if (this.mapping.length > MAPPING_WINDOW) this.mapping.shift();
  }

  /** Context time (s) → client time (ms since the epoch) at which it is heard. */
  contextToClient(c) {
    if (this.mapping.length > 0) {
      const sorted = this.mapping.slice().sort((a, b) => a - b);
      const m = sorted[Math.floor((sorted.length - 1) * MAPPING_QUANTILE)];
      return performance.timeOrigin + m + c * 1000;
    }
    const now = performance.timeOrigin + performance.now();
    return now + (c - this.ctx.currentTime + this.reportedLatency()) * 1000;
  }

  /** Server time (ms) → the context time (s) to start a sound so it is heard then. */
  serverToContext(serverTime) {
    const lag = this.contextToClient(0);
    return (serverTime - this.clockOffset() - this.calibrationMs - lag) / 1000;
  }

  /** Context time (s) → the server time (ms) a sound started then is heard at. */
  contextToServer(c) {
    return this.contextToClient(c) + this.clockOffset() + this.calibrationMs;
  }

  /** Drops every click not yet sounded with serverTime >= from (a changed timeline). */
  cancelFrom(from) {
    const keep = [];
    for (const p of this.pending) {
      if (p.serverTime >= from) {
        try {
          p.node.stop(0);
        } catch (_) {
          // Already stopped.
        }
        p.gain.disconnect();
      } else {
        keep.push(p);
      }
    }
    this.pending = keep;
    this.clicks = this.clicks.filter((c) => c.serverTime < from);
  }

  /** One scheduler pass: the beats of the next LOOKAHEAD_MS, handed to the audio clock. */
  tick() {
    const ctx = this.ctx;
    if (!this.enabled || !ctx || ctx.state !== 'running') return;
    this.sampleMapping();
    // The earliest server time a click can still be started for: what the frame being
    // rendered now is heard at. Before it, only what was already handed over can sound.
    const earliest = this.contextToServer(ctx.currentTime + MIN_LEAD_S);
    const { transport, scheduled, version } = this.timeline();
    if (version !== this.version) {
      // A new state (tempo, seek, pause, a change announced or withdrawn): what was handed
      // to the audio clock for later came from the old one.
      this.cancelFrom(earliest);
      this.version = version;
      this.scheduledUntil = earliest;
    }
    const now = this.clockOffset() + performance.timeOrigin + performance.now();
    // A window never reaches back more than a second (a tab woken from the background).
    const from = this.scheduledUntil === null
      ? earliest : Math.max(this.scheduledUntil, earliest - 1000);
    const to = Math.max(now, earliest) + LOOKAHEAD_MS;
    if (!(to > from)) return;
    this.scheduledUntil = to;
    const renderedNow = ctx.currentTime;
    this.pending = this.pending.filter((p) => p.when > renderedNow);
    for (const { beat, serverTime } of beatsInWindow(transport, scheduled, from, to)) {
      const when = this.serverToContext(serverTime);
      if (when < ctx.currentTime + MIN_LEAD_S) continue; // too late to sound on time
      const bpb = this.beatsPerBar();
      const accent = ((beat % bpb) + bpb) % bpb === 0;
      this.sound(when, accent, serverTime);
      this.clicks.push({ beat, accent, serverTime, contextTime: when });
      if (this.clicks.length > DEBUG_CLICKS) this.clicks.shift();
    }
  }

  sound(when, accent, serverTime) {
    const ctx = this.ctx;
    const node = ctx.createOscillator();
    const gain = ctx.createGain();
    node.frequency.value = accent ? 1760 : 880;
    gain.gain.setValueAtTime(0, 0);
    gain.gain.setValueAtTime(accent ? 0.5 : 0.3, when);
    gain.gain.exponentialRampToValueAtTime(0.001, when + CLICK_S);
    node.connect(gain).connect(ctx.destination);
    node.start(when);
    node.stop(when + CLICK_S);
    node.onended = () => gain.disconnect();
    this.pending.push({ node, gain, serverTime, when });
  }
}
