// The ChordPro subset and its timing rule (static/js/chordpro.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  beatsOfTime, lineAt, MAX_LINES, parseChordPro, parseDirective, splitChords,
} from '../../../static/js/chordpro.js';

const SONG = `# a comment line, not shown
{title: Blue Moon}
{st: Rodgers and Hart}
{artist: The Band}
{key: G}
{tempo: 96}

{c: Intro, softly}
[G]Blue [Em]moon, you [C]saw me [D]standing a-[G]lone
{start_of_chorus: Chorus}
{x_bars: 2}
[C]Without a [D]dream in my [G]heart
[G] [Em] [C] [D]
{eoc}
{unknown_directive: dropped}
Without chords
`;

test('directives: {name}, {name: value}, {name value}, aliases, case', () => {
  assert.deepEqual(parseDirective('{title: Blue}'), { name: 'title', value: 'Blue' });
  assert.deepEqual(parseDirective('{T:Blue}'), { name: 'title', value: 'Blue' });
  assert.deepEqual(parseDirective('{soc}'), { name: 'start_of_chorus', value: '' });
  assert.deepEqual(parseDirective('{x_bars 2}'), { name: 'x_bars', value: '2' });
  assert.equal(parseDirective('{not closed'), null);
  assert.equal(parseDirective('text {title: x}'), null);
});

test('chords split the lyrics; text before the first chord has none', () => {
  assert.deepEqual(splitChords('[G]Hello [C]world'), [{ chord: 'G', text: 'Hello ' }, { chord: 'C', text: 'world' }]);
  assert.deepEqual(splitChords('Oh [Am7]yes'), [{ chord: '', text: 'Oh ' }, { chord: 'Am7', text: 'yes' }]);
  assert.deepEqual(splitChords('[G][C]'), [{ chord: 'G', text: '' }, { chord: 'C', text: '' }]);
  assert.deepEqual(splitChords('a [ b'), [{ chord: '', text: 'a [ b' }]);
  assert.deepEqual(splitChords('<b>[x]</b>'), [{ chord: '', text: '<b>' }, { chord: 'x', text: '</b>' }]);
});

test('the meter comes from the first valid {time: N/M}', () => {
  assert.equal(beatsOfTime('3/4'), 3);
  assert.equal(beatsOfTime('6/8'), 6);
  assert.equal(beatsOfTime('0/4'), null);
  assert.equal(beatsOfTime('4/5'), null);
  assert.equal(beatsOfTime('99/4'), null);
  assert.equal(parseChordPro('{time: 7/8}\n{time: 3/4}\nx').beatsPerBar, 7);
  assert.equal(parseChordPro('{time: junk}\nx').beatsPerBar, 4);
  assert.equal(parseChordPro('x', 5).beatsPerBar, 5);
});

test('a song: meta, sections, comments, and one bar per line unless {x_bars}', () => {
  const s = parseChordPro(SONG);
  assert.deepEqual(s.meta, { title: 'Blue Moon', subtitle: 'Rodgers and Hart', artist: 'The Band', key: 'G', tempo: '96' });
  assert.equal(s.beatsPerBar, 4);
  const timed = s.lines.filter((l) => l.kind === 'lyrics');
  assert.deepEqual(timed.map((l) => [l.startBeat, l.endBeat]), [[0, 4], [4, 12], [12, 16], [16, 20]]);
  assert.deepEqual(timed.map((l) => l.section), [null, 'chorus', 'chorus', null]);
  assert.equal(s.totalBeats, 20);
  const kinds = s.lines.map((l) => l.kind);
  assert.deepEqual(kinds, ['comment', 'lyrics', 'section', 'lyrics', 'lyrics', 'lyrics']);
  assert.equal(s.lines[0].text, 'Intro, softly');
  assert.equal(s.lines[0].startBeat, s.lines[0].endBeat, 'comments take no time');
  assert.equal(s.lines[2].text, 'Chorus');
});

test('{x_start_beat} moves the first line; later ones, and bad values, are ignored', () => {
  const s = parseChordPro('{x_start_beat: 8}\na\n{x_start_beat: 100}\nb\n');
  assert.deepEqual(s.lines.map((l) => [l.startBeat, l.endBeat]), [[8, 12], [12, 16]]);
  for (const bad of ['-4', 'x', '1e9', 'Infinity', '']) {
    assert.equal(parseChordPro(`{x_start_beat: ${bad}}\na`).lines[0].startBeat, 0, bad);
  }
  for (const bad of ['0', '-1', '65', 'NaN']) {
    assert.equal(parseChordPro(`{x_bars: ${bad}}\na`).lines[0].endBeat, 4, bad);
  }
  assert.equal(parseChordPro('{x_bars: 0.5}\na').lines[0].endBeat, 2);
});

test('the line at a position: timed lines only, none before the first or after the last', () => {
  const { lines } = parseChordPro(SONG);
  const at = (pos) => { const i = lineAt(lines, pos); return i < 0 ? null : lines[i].text; };
  assert.equal(at(-1), null);
  assert.equal(at(0), lines[1].text);
  assert.equal(at(3.999), lines[1].text);
  assert.equal(at(4), lines[3].text);
  assert.equal(at(11.9), lines[3].text);
  assert.equal(at(12), lines[4].text);
  assert.equal(at(19.99), 'Without chords');
  assert.equal(at(20), null);
  const shifted = parseChordPro('{x_start_beat: 8}\na').lines;
  assert.equal(lineAt(shifted, 4), -1);
  assert.equal(lineAt([], 0), -1);
});

test('hostile input is bounded: not a string, huge, many lines, markup kept as text', () => {
  assert.deepEqual(parseChordPro(undefined).lines, []);
  assert.deepEqual(parseChordPro({ toString: () => 'x' }).lines, []);
  const many = parseChordPro('a\n'.repeat(8000));
  assert.ok(many.lines.length <= MAX_LINES);
  const html = parseChordPro('{title: <img src=x onerror=alert(1)>}\n<script>x</script>');
  assert.equal(html.meta.title, '<img src=x onerror=alert(1)>');
  assert.equal(html.lines[0].segments[0].text, '<script>x</script>');
  const cr = parseChordPro('a\r\nb\rc');
  assert.equal(cr.lines.length, 3);
});
