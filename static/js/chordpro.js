// ChordPro, the subset band software commonly writes, parsed into lines tied to beats.
// Pure: text in, plain objects out (tests/browser/unit/chordpro.test.mjs). Nothing here
// builds HTML; sheet.js puts the text into the page with textContent only.
//
// The timing rule (PROTOCOL.md section 6, "The chord sheet in time"):
// - a chord or lyric line lasts one bar; `{x_bars: N}` before it makes the next such line
//   last N bars (0 < N <= 64; ChordPro reserves the `x_` prefix for extensions);
// - a bar is `beatsPerBar` beats: N of the sheet's first valid `{time: N/M}`, else the default
//   given (4); later `{time}` directives are shown but do not re-time the song;
// - directives, comments, `#` lines and blank lines take no time;
// - the first timed line starts at beat 0, or at B after `{x_start_beat: B}` (0 <= B <= 1e6)
//   given before it.
// So line k of a plain sheet spans beats [k * beatsPerBar, (k + 1) * beatsPerBar).

/** Longest text parsed, in characters: the server caps sheets at 12 KiB of UTF-8. */
export const MAX_TEXT_CHARS = 16 * 1024;
/** Most lines kept; a 12 KiB sheet of blank lines would otherwise be 12,288 of them. */
export const MAX_LINES = 2000;
export const MAX_BARS_PER_LINE = 64;
export const MAX_START_BEAT = 1e6;
export const MAX_BEATS_PER_BAR = 32;
export const DEFAULT_BEATS_PER_BAR = 4;

const ALIASES = {
  t: 'title',
  st: 'subtitle',
  c: 'comment',
  ci: 'comment',
  cb: 'comment',
  comment_italic: 'comment',
  comment_box: 'comment',
  soc: 'start_of_chorus',
  eoc: 'end_of_chorus',
  sov: 'start_of_verse',
  eov: 'end_of_verse',
  sob: 'start_of_bridge',
  eob: 'end_of_bridge',
};
const META = new Set(['title', 'subtitle', 'artist', 'key', 'tempo', 'time']);
const SECTIONS = /^(start|end)_of_(chorus|verse|bridge)$/;

/** `{name}`, `{name: value}` or `{name value}` → `{name, value}` (name lower-cased), or null. */
export function parseDirective(line) {
  const m = /^\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(?:[:\s]\s*(.*?))?\s*\}$/.exec(line.trim());
  if (!m) return null;
  const raw = m[1].toLowerCase();
  return { name: ALIASES[raw] || raw, value: (m[2] || '').trim() };
}

/** `N/M` → N when 1 <= N <= 32 and M is a power of two up to 32, else null. */
export function beatsOfTime(value) {
  const m = /^(\d{1,2})\s*\/\s*(\d{1,2})$/.exec(value);
  if (!m) return null;
  const n = Number(m[1]);
  const unit = Number(m[2]);
  const unitOk = [1, 2, 4, 8, 16, 32].includes(unit);
  return n >= 1 && n <= MAX_BEATS_PER_BAR && unitOk ? n : null;
}

/**
 * `[G]Hello [C]world` → `[{chord: 'G', text: 'Hello '}, {chord: 'C', text: 'world'}]`; text
 * before the first chord has `chord: ''`. An unclosed `[` is text.
 */
export function splitChords(line) {
  const segments = [];
  const re = /\[([^\]\[]{0,32})\]/g;
  let last = 0;
  let chord = '';
  let m;
  while ((m = re.exec(line)) !== null) {
    if (m.index > last || chord) segments.push({ chord, text: line.slice(last, m.index) });
    chord = m[1].trim();
    last = re.lastIndex;
  }
  if (last < line.length || chord) segments.push({ chord, text: line.slice(last) });
  return segments.filter((s) => s.chord || s.text);
}

function boundedNumber(value, min, max, inclusiveMin) {
  if (!/^[+]?\d+(\.\d+)?$/.test(value)) return null;
  const v = Number(value);
  return (inclusiveMin ? v >= min : v > min) && v <= max ? v : null;
}

/**
 * Parses `text` into `{meta, beatsPerBar, lines, totalBeats}`. Each line is
 * `{kind, section, text, segments, startBeat, endBeat}`: kind `lyrics` (timed: endBeat >
 * startBeat) or `comment`, `section` (a section's start label: `chorus`, `verse`, `bridge`);
 * untimed lines have startBeat === endBeat. `meta` holds title, subtitle, artist, key, tempo
 * and time as given (strings); unknown directives are dropped.
 */
export function parseChordPro(text, defaultBeatsPerBar = DEFAULT_BEATS_PER_BAR) {
  const source = typeof text === 'string' ? text.slice(0, MAX_TEXT_CHARS) : '';
  const rawLines = source.split(/\r\n|\r|\n/);
  const meta = {};
  let beatsPerBar = null;
  // A first pass for the meter: every line's length depends on it.
  for (const raw of rawLines) {
    const d = raw.trim().startsWith('{') ? parseDirective(raw) : null;
    if (d && d.name === 'time' && beatsPerBar === null) beatsPerBar = beatsOfTime(d.value);
  }
  if (beatsPerBar === null) beatsPerBar = defaultBeatsPerBar;

  const lines = [];
  let cursor = 0;
  let started = false;
  let nextBars = 1;
  let section = null;
  const push = (line) => {
    if (lines.length < MAX_LINES) lines.push({ section, startBeat: cursor, endBeat: cursor, ...line });
  };
  for (const raw of rawLines) {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const d = trimmed.startsWith('{') ? parseDirective(trimmed) : null;
    if (d) {
      const sec = SECTIONS.exec(d.name);
      if (sec) {
        section = sec[1] === 'start' ? sec[2] : null;
        if (section) push({ kind: 'section', text: d.value || section, segments: [] });
      } else if (META.has(d.name)) {
        if (!(d.name in meta)) meta[d.name] = d.value.slice(0, 200);
      } else if (d.name === 'comment') {
        push({ kind: 'comment', text: d.value, segments: [] });
      } else if (d.name === 'x_bars') {
        const bars = boundedNumber(d.value, 0, MAX_BARS_PER_LINE, false);
        if (bars !== null) nextBars = bars;
      } else if (d.name === 'x_start_beat' && !started) {
        const start = boundedNumber(d.value, 0, MAX_START_BEAT, true);
        if (start !== null) cursor = start;
      }
      continue;
    }
    const segments = splitChords(raw.replace(/\s+$/, ''));
    const lengthBeats = nextBars * beatsPerBar;
    if (lines.length < MAX_LINES) {
      lines.push({
        kind: 'lyrics', section, text: trimmed, segments, startBeat: cursor,
        endBeat: cursor + lengthBeats,
      });
    }
    cursor += lengthBeats;
    started = true;
    nextBars = 1;
  }
  return { meta, beatsPerBar, lines, totalBeats: cursor };
}

/**
 * The index of the timed line sounding at position `pos` (startBeat <= pos < endBeat), or -1
 * before the first and after the last. Binary search over the timed lines, which are in
 * order and do not overlap.
 */
export function lineAt(lines, pos) {
  let lo = 0;
  let hi = lines.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (lines[mid].startBeat <= pos) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  // Untimed lines share their start with the next timed one: step back to a timed line.
  while (found >= 0 && lines[found].endBeat === lines[found].startBeat) found -= 1;
  return found >= 0 && pos < lines[found].endBeat ? found : -1;
}
