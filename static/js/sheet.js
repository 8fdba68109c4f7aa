// The chord sheet on the page: rendered from the parsed ChordPro (chordpro.js), the line
// sounding at the position highlighted and scrolled into view. Every piece of the sheet's
// text goes in through textContent: the leader's text is never markup.

import { parseChordPro, lineAt } from './chordpro.js';

const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

export class SheetView {
  /** `box` scrolls; `header` gets the title and the meta; `body` the lines. */
  constructor({ box, header, body }) {
    this.box = box;
    this.header = header;
    this.body = body;
    this.text = null;
    this.parsed = parseChordPro('');
    this.nodes = [];
    this.current = -1;
  }

  /** The meter the sheet gives (`{time: N/M}`), or null when it gives none. */
  sheetBeatsPerBar() {
    return this.parsed.meta.time !== undefined && this.text ? this.parsed.beatsPerBar : null;
  }

  /**
   * Re-renders when the text changed. The lines' timing depends on the text alone (a sheet
   * without `{time}` is in 4): every page must show the same line at the same position,
   * whatever meter a member set for their own click.
   */
  set(text) {
    const t = typeof text === 'string' ? text : '';
    if (t === this.text) return;
    this.text = t;
    this.parsed = parseChordPro(t);
    this.current = -1;
    this.renderHeader();
    this.nodes = this.parsed.lines.map((line) => this.renderLine(line));
    this.body.replaceChildren(...this.nodes);
    this.box.classList.toggle('empty', t.trim() === '');
    this.box.scrollTop = 0;
  }

  renderHeader() {
    const { meta } = this.parsed;
    const parts = [];
    if (meta.title) parts.push(el('h3', 'sheet-title', meta.title));
    if (meta.subtitle) parts.push(el('div', 'sheet-subtitle', meta.subtitle));
    const facts = [
      meta.artist,
      meta.key && `key ${meta.key}`,
      meta.tempo && `${meta.tempo} bpm`,
      meta.time && `time ${meta.time}`,
    ].filter(Boolean);
    if (facts.length) parts.push(el('div', 'sheet-meta', facts.join(' · ')));
    this.header.replaceChildren(...parts);
  }

  renderLine(line) {
    if (line.kind === 'comment') return el('div', 'sheet-line comment', line.text);
    if (line.kind === 'section') return el('div', `sheet-line section ${line.section}`, line.text);
    const row = el('div', `sheet-line lyrics${line.section ? ` in-${line.section}` : ''}`);
    if (line.segments.every((seg) => seg.text.trim() === '')) row.classList.add('chords-only');
    row.dataset.start = String(line.startBeat);
    for (const seg of line.segments) {
      const cell = el('span', 'seg');
      cell.append(el('span', 'chord', seg.chord || '\u00a0'), el('span', 'lyric', seg.text || '\u00a0'));
      row.append(cell);
    }
    return row;
  }

  /** Highlights the line at position `pos` (beats) and scrolls it to a third of the box. */
  follow(pos) {
    const index = lineAt(this.parsed.lines, pos);
    if (index === this.current) return;
    if (this.current >= 0 && this.nodes[this.current]) this.nodes[this.current].classList.remove('current');
    this.current = index;
    const node = this.nodes[index];
    if (!node) return;
    node.classList.add('current');
    // Scroll the box only (scrollIntoView would move the whole page under the player). The
    // box is the lines' offsetParent (position: relative in style.css).
    const top = node.offsetTop - this.box.clientHeight / 3;
    this.box.scrollTop = Math.max(0, top);
  }
}
