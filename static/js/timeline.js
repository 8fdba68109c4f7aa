// The shared timeline (PROTOCOL.md section 6), pure: the position at a server time from a
// transport and an announced scheduled change, and the beats that fall in a window of
// server time, which the click schedules. Tested by tests/browser/unit/timeline.test.mjs.

const MS_PER_MINUTE = 60000;
/**
 * Beats within this of a whole number count as that whole number. A quantized change lands
 * exactly on a bar in exact arithmetic, but the position computed at `at` from the old
 * transport may come out a hair either side of it in floating point (server times near
 * 1.7e12 ms carry 2.4e-4 ms of rounding, 1.6e-6 beat at 400 bpm); without the snap the
 * bar's click could fall in both segments, or in neither. 1e-4 beat is 0.3 ms at 20 bpm.
 */
export const BEAT_EPSILON = 1e-4;
/** Bound on the beats one window may return: a huge window (a tab woken from the background)
 * must not build a huge list. 64 beats is 9.6 s at the fastest tempo. */
export const MAX_BEATS_PER_WINDOW = 64;

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** A transport from the wire, checked, or null: `{playing, tempo, beat, anchorTime}`. */
export function readTransport(tr) {
  if (!tr || !isNum(tr.tempo) || tr.tempo <= 0 || !isNum(tr.beat) || !isNum(tr.anchorTime)) {
    return null;
  }
  return { playing: !!tr.playing, tempo: tr.tempo, beat: tr.beat, anchorTime: tr.anchorTime };
}

/** A scheduled change from the wire, checked, or null: `{id, action, at, transport}`. */
export function readScheduled(sc) {
  if (!sc || !isNum(sc.at)) return null;
  const transport = readTransport(sc.transport);
  if (!transport) return null;
  const action = typeof sc.action === 'string' ? sc.action : '';
  return { id: isNum(sc.id) ? sc.id : null, action, at: sc.at, transport };
}

/** The contract's position model: beat + (playing ? (t - anchorTime) * tempo / 60000 : 0). */
export function positionAt(tr, t) {
  if (!tr) return 0;
  return tr.beat + (tr.playing ? (t - tr.anchorTime) * tr.tempo / MS_PER_MINUTE : 0);
}

/** The transport in effect at server time `t`: the scheduled one from its instant on. */
export function transportAt(tr, scheduled, t) {
  return scheduled && t >= scheduled.at ? scheduled.transport : tr;
}

/** The position at server time `t`, following a scheduled change exactly at its instant. */
export function positionWithSchedule(tr, scheduled, t) {
  return positionAt(transportAt(tr, scheduled, t), t);
}

/** The server time at which a playing transport reaches `beat`. */
export function timeOfBeat(tr, beat) {
  return tr.anchorTime + (beat - tr.beat) * MS_PER_MINUTE / tr.tempo;
}

/**
 * The whole beats a transport plays in server time [from, to): `{beat, serverTime}` each.
 * A beat belongs to the window when its position, snapped by BEAT_EPSILON, is in
 * [position(from), position(to)); consecutive windows therefore share no beat and miss none.
 */
function beatsOfSegment(tr, from, to, out) {
  if (!tr || !tr.playing || !(to > from)) return;
  const first = Math.ceil(positionAt(tr, from) - BEAT_EPSILON) + 0; // + 0: never -0
  const end = positionAt(tr, to) - BEAT_EPSILON;
  for (let b = first; b < end && out.length < MAX_BEATS_PER_WINDOW; b++) {
    out.push({ beat: b, serverTime: Math.max(from, timeOfBeat(tr, b)) });
  }
}

/**
 * Every whole beat sounding in server time [from, to), with the scheduled change applied at
 * its instant: the old transport's beats before `scheduled.at`, the new one's from it on.
 * A change quantized to bar N therefore gives the click of beat N at exactly `at`, once.
 */
export function beatsInWindow(tr, scheduled, from, to) {
  const out = [];
  if (!isNum(from) || !isNum(to)) return out;
  if (scheduled && scheduled.at < to) {
    beatsOfSegment(tr, from, Math.min(to, scheduled.at), out);
    beatsOfSegment(scheduled.transport, Math.max(from, scheduled.at), to, out);
  } else {
    beatsOfSegment(tr, from, to, out);
  }
  return out;
}

/** The bar (1-based) holding position `pos`, a bar boundary counting as the bar it starts. */
export function barOf(pos, beatsPerBar) {
  return Math.floor(pos / beatsPerBar + BEAT_EPSILON) + 1;
}
