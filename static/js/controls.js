// The page's controls: the leader's transport commands (at once, or at the next bar), the
// message, the leader seat, the chord sheet, and each member's own click settings.

import { send } from './connection.js';
import { addLog } from './session.js';
import { loadCalibration, MAX_CALIBRATION_MS, saveCalibration } from './click.js';

/** The server's bound on a sheet, in bytes of UTF-8 (protocol MAX_SHEET_BYTES). */
export const MAX_SHEET_BYTES = 12 * 1024;
const MIN_TEMPO = 20;
const MAX_TEMPO = 400;
const MAX_MESSAGE_CHARS = 1000;

/**
 * Wires the controls. `render()` redraws; `beatsPerBar()` is the meter a quantized command
 * waits for; `click` the Click.
 */
export function wireControls({ el, render, beatsPerBar, click }) {
  const fail = (text) => {
    addLog('error', text);
    render();
  };
  const numberFrom = (input, what) => {
    const v = Number(input.value);
    if (input.value.trim() === '' || !Number.isFinite(v)) {
      fail(`${what}: enter a number`);
      return null;
    }
    return v;
  };
  /** The command's data, with `quantum` when "at next bar" is ticked. */
  const scheduled = (data) => (el.atNextBar.checked ? { ...data, quantum: beatsPerBar() } : data);

  el.setTempo.addEventListener('click', () => {
    const tempo = numberFrom(el.tempoInput, 'tempo');
    if (tempo === null) return;
    if (tempo < MIN_TEMPO || tempo > MAX_TEMPO) {
      fail(`tempo must be ${MIN_TEMPO} to ${MAX_TEMPO} bpm`);
      return;
    }
    send('set_tempo', scheduled({ tempo }));
  });
  el.play.addEventListener('click', () => {
    const data = scheduled({});
    send('play', Object.keys(data).length ? data : undefined);
  });
  el.pause.addEventListener('click', () => {
    const data = scheduled({});
    send('pause', Object.keys(data).length ? data : undefined);
  });
  el.seek.addEventListener('click', () => {
    const beat = numberFrom(el.seekInput, 'beat');
    if (beat === null) return;
    if (beat < 0) {
      fail('beat must be 0 or more');
      return;
    }
    send('seek', scheduled({ beat }));
  });

  const sendMessage = () => {
    const text = el.messageInput.value;
    if ([...text].length > MAX_MESSAGE_CHARS) {
      fail(`message: at most ${MAX_MESSAGE_CHARS} characters`);
      return;
    }
    send('update_message', { text });
  };
  el.sendMessage.addEventListener('click', sendMessage);
  el.messageInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') sendMessage();
  });
  el.takeLead.addEventListener('click', () => send('set_role', { role: 'leader' }));
  el.stepDown.addEventListener('click', () => send('set_role', { role: 'follower' }));

  const sheetBytes = () => new TextEncoder().encode(el.sheetInput.value).length;
  const showSheetBytes = () => {
    const n = sheetBytes();
    el.sheetBytes.textContent = `${n} / ${MAX_SHEET_BYTES} bytes`;
    el.sheetBytes.classList.toggle('over', n > MAX_SHEET_BYTES);
  };
  el.sheetInput.addEventListener('input', showSheetBytes);
  showSheetBytes();
  el.setSheet.addEventListener('click', () => {
    if (sheetBytes() > MAX_SHEET_BYTES) {
      fail(`sheet: at most ${MAX_SHEET_BYTES} bytes`);
      return;
    }
    send('set_sheet', { text: el.sheetInput.value });
  });

  // The click is each member's own: on a user gesture (the autoplay policy), with the
  // device's calibration kept in localStorage.
  click.calibrationMs = loadCalibration(localStorage);
  el.calibration.value = String(click.calibrationMs);
  el.calibration.addEventListener('change', () => {
    const v = numberFrom(el.calibration, 'calibration');
    if (v === null) return;
    const ms = Math.max(-MAX_CALIBRATION_MS, Math.min(MAX_CALIBRATION_MS, v));
    el.calibration.value = String(ms);
    click.calibrationMs = ms;
    click.scheduledUntil = null; // re-plan from now with the new lead
    click.cancelFrom(-Infinity);
    saveCalibration(localStorage, ms);
  });
  el.clickToggle.addEventListener('click', async () => {
    if (click.enabled) {
      click.disable();
    } else {
      try {
        await click.enable();
      } catch (e) {
        fail(`click: ${e && e.message ? e.message : e}`);
      }
    }
    el.clickToggle.textContent = click.enabled ? 'Click off' : 'Click on';
    el.clickToggle.setAttribute('aria-pressed', String(click.enabled));
    render();
  });
  el.beatsPerBar.addEventListener('change', render);
}
