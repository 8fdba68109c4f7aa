// bandsync listening page: follows one repository's stream (`GET /stream/{repoId}`, SSE) and
// plays each composition as it arrives, with Tone.js (vendored, served from /vendor/tone.js).
//
// The repository id is this page's own path: /listen/{name} or /listen/{owner}/{name}. The
// stream is asked for `?encoding=f32` (base64 of little-endian float32 samples): 4 bytes a
// sample plus a third for base64, against 8 to 12 characters a sample as JSON numbers, and the
// same values bit for bit. Browsers only play audio after a user gesture unless told
// otherwise, so a "Start audio" button appears while the AudioContext is suspended; when it
// is already running, compositions play as soon as they arrive.
//
// For tests, `window.bandsyncListen` exposes what arrived and how many playbacks started.

(() => {
  'use strict';

  /** Bounds on what a message may ask of the page (the server stays far below them). */
  const LIMITS = {
    maxChannels: 8,
    minSampleRate: 8000,
    maxSampleRate: 192000,
    maxSeconds: 60,
  };
  /** Compositions listed (and kept in `bandsyncListen.compositions`); older ones are dropped. */
  const HISTORY = 50;
  const ENCODINGS = ['f32', 'i16', 'json'];

  const $ = (id) => document.getElementById(id);
  const setText = (id, value) => { $(id).textContent = value === undefined || value === null || value === '' ? '–' : String(value); };

  // ---- the repository id, from the path ------------------------------------------------------

  const PREFIX = '/listen/';
  let repoId = '';
  try {
    repoId = decodeURIComponent(location.pathname.slice(PREFIX.length));
  } catch (_) {
    repoId = '';
  }
  const REPO_RE = /^[A-Za-z0-9._-]{1,100}(\/[A-Za-z0-9._-]{1,100})?$/;
  const repoValid = location.pathname.startsWith(PREFIX) && REPO_RE.test(repoId)
    && !repoId.split('/').some((s) => s === '.' || s === '..');
  // First segments the Stream Manager owns under /stream/ (protocol/PROTOCOL.md). The server
  // matches them before percent-decoding, so a repository whose owner is called like one is
  // addressed with that segment's first letter percent-encoded (`/stream/%73tatus/site`).
  const RESERVED = ['status', 'start', 'stop', 'pause', 'reset', 'layers', 'assets'];
  const segments = repoId.split('/').map(encodeURIComponent);
  if (RESERVED.includes(segments[0])) {
    segments[0] = `%${segments[0].charCodeAt(0).toString(16).toUpperCase()}${segments[0].slice(1)}`;
  }
  const repoPath = segments.join('/');
  const requested = new URLSearchParams(location.search).get('encoding');
  const encoding = ENCODINGS.includes(requested) ? requested : 'f32';

  // ---- what tests (and curious people) can read ----------------------------------------------

  const state = {
    repoId,
    encoding,
    connected: false,
    clientId: null,
    /** Newest last: {compositionId, length, sampleRate, numberOfChannels, receivedAt}. */
    compositions: [],
    /** Playbacks started (`Tone.Player.start` called and the player reports `started`). */
    started: 0,
    errors: [],
    /** Sample values of the buffer now loaded in the player (channel, frame indices). */
    samples(channel, indices) {
      const buffer = player && player.buffer.get();
      if (!buffer) return null;
      const data = buffer.getChannelData(channel);
      return indices.map((i) => data[i]);
    },
    /** The AudioBuffer the player holds: its shape, as the Web Audio API reports it. */
    loaded() {
      const buffer = player && player.buffer.get();
      return buffer ? { length: buffer.length, sampleRate: buffer.sampleRate, numberOfChannels: buffer.numberOfChannels } : null;
    },
  };
  window.bandsyncListen = state;

  // ---- decoding --------------------------------------------------------------------------------

  const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /** One channel as float32 samples, from the encoding the server declared. */
  function decodeChannel(channel, kind, length) {
    let samples;
    if (kind === 'json') {
      if (!Array.isArray(channel)) throw new Error('a json channel must be an array of numbers');
      samples = Float32Array.from(channel);
    } else if (typeof channel !== 'string') {
      throw new Error(`an ${kind} channel must be a base64 string`);
    } else if (kind === 'f32') {
      const bytes = base64Bytes(channel);
      if (bytes.length % 4 !== 0) throw new Error('f32 channel is not a whole number of samples');
      if (LITTLE_ENDIAN) {
        samples = new Float32Array(bytes.buffer);
      } else {
        const view = new DataView(bytes.buffer);
        samples = new Float32Array(bytes.length / 4);
        for (let i = 0; i < samples.length; i++) samples[i] = view.getFloat32(i * 4, true);
      }
    } else {
      const bytes = base64Bytes(channel);
      if (bytes.length % 2 !== 0) throw new Error('i16 channel is not a whole number of samples');
      const view = new DataView(bytes.buffer);
      samples = new Float32Array(bytes.length / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
    }
    if (samples.length !== length) throw new Error(`a channel holds ${samples.length} samples, not ${length}`);
    return samples;
  }

  /** The message's `buffer` as an AudioBuffer at the server's sample rate, checked first. */
  function toAudioBuffer(buffer) {
    const { sampleRate, length, numberOfChannels, channels } = buffer || {};
    const kind = buffer && buffer.encoding ? buffer.encoding : 'json';
    if (!ENCODINGS.includes(kind)) throw new Error(`unknown encoding ${kind}`);
    if (!Number.isInteger(numberOfChannels) || numberOfChannels < 1 || numberOfChannels > LIMITS.maxChannels) {
      throw new Error(`numberOfChannels must be 1 to ${LIMITS.maxChannels}`);
    }
    if (!Number.isFinite(sampleRate) || sampleRate < LIMITS.minSampleRate || sampleRate > LIMITS.maxSampleRate) {
      throw new Error('sampleRate out of range');
    }
    if (!Number.isInteger(length) || length < 1 || length > sampleRate * LIMITS.maxSeconds) {
      throw new Error('length out of range');
    }
    if (!Array.isArray(channels) || channels.length !== numberOfChannels) {
      throw new Error('channels must hold one entry per channel');
    }
    // Built directly rather than with ToneAudioBuffer.fromArray, which would take the
    // context's sample rate (often 48 kHz) and play the composition at the wrong pitch.
    const audio = new AudioBuffer({ numberOfChannels, length, sampleRate });
    channels.forEach((channel, i) => audio.copyToChannel(decodeChannel(channel, kind, length), i));
    return audio;
  }

  // ---- playback --------------------------------------------------------------------------------

  let player = null;
  /** A composition that arrived while audio was locked; played by "Start audio". */
  let pending = false;

  function audioRunning() {
    return Tone.getContext().state === 'running';
  }

  function showAudioState() {
    const running = audioRunning();
    $('audio-state').textContent = `audio ${Tone.getContext().state}`;
    $('start-audio').hidden = running;
  }

  /** Loads the composition into a fresh player (the previous one is stopped and freed). */
  function load(audio) {
    if (player) {
      player.stop();
      player.dispose();
    }
    player = new Tone.Player(new Tone.ToneAudioBuffer(audio)).toDestination();
    player.onstop = () => setText('playing-state', 'finished');
  }

  function play() {
    if (!player) return;
    if (!audioRunning()) {
      pending = true;
      setText('playing-state', 'ready: press "Start audio" to hear it');
      showAudioState();
      return;
    }
    pending = false;
    player.start();
    if (player.state === 'started') {
      state.started += 1;
      setText('playing-state', 'playing');
    }
  }

  $('start-audio').addEventListener('click', async () => {
    try {
      await Tone.start();
    } catch (e) {
      note(`audio could not start: ${e.message}`, 'error');
    }
    showAudioState();
    if (pending) play();
  });

  // ---- the stream ----------------------------------------------------------------------------

  function setStatus(kind, text) {
    const el = $('status');
    el.dataset.state = kind;
    el.textContent = text;
  }

  function note(text, kind) {
    if (kind === 'error') state.errors.push(text);
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
    if (kind) li.className = kind;
    const list = $('history');
    list.prepend(li);
    while (list.children.length > HISTORY) list.lastElementChild.remove();
  }

  function describeTrigger(trigger) {
    if (!trigger) return ['–', '–', '–'];
    const why = trigger.kind === 'test' ? 'test request' : `GitHub ${trigger.kind || 'event'}`;
    const event = [trigger.event, trigger.action].filter(Boolean).join(' / ');
    const sender = trigger.delivery ? `${trigger.sender || '–'} (delivery ${trigger.delivery})` : trigger.sender;
    return [why, event, sender];
  }

  function showComposition(data, audio) {
    const params = data.params || {};
    const [why, event, sender] = describeTrigger(data.trigger);
    const summary = (data.trigger && data.trigger.summary) || '';
    $('summary').textContent = summary;
    $('summary').classList.toggle('empty', !summary);
    setText('trigger', why);
    setText('event', event);
    setText('sender', sender);
    setText('tempo', Number.isFinite(params.tempo) ? `${params.tempo} bpm` : null);
    setText('scale', Array.isArray(params.scale) ? params.scale.join(' ') : null);
    setText('instrument', params.instrumentType);
    setText('duration', Number.isFinite(params.duration) ? `${params.duration} s` : null);
    setText('density', params.density);
    setText('pattern', params.pattern);
    setText('seed', params.seed);
    setText('buffer', `${audio.numberOfChannels} ch × ${audio.length} frames at ${audio.sampleRate} Hz (${encoding})`);
    setText('composition-id', data.compositionId);
    const label = summary || `${params.instrumentType || '?'} at ${params.tempo || '?'} bpm`;
    note(`${why}: ${label} (${audio.duration.toFixed(2)} s)`);
  }

  function onAudioBuffer(data) {
    let audio;
    try {
      audio = toAudioBuffer(data.buffer);
    } catch (e) {
      note(`a composition could not be decoded: ${e.message}`, 'error');
      return;
    }
    state.compositions.push({
      compositionId: data.compositionId || null,
      length: audio.length,
      sampleRate: audio.sampleRate,
      numberOfChannels: audio.numberOfChannels,
      receivedAt: Date.now(),
    });
    if (state.compositions.length > HISTORY) state.compositions.shift();
    setText('received', state.compositions.length);
    showComposition(data, audio);
    load(audio);
    play();
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      note('the stream sent a message that is not JSON', 'error');
      return;
    }
    const data = message && message.data;
    switch (message && message.type) {
      case 'connected':
        state.connected = true;
        state.clientId = data && data.clientId;
        setStatus('connected', 'connected');
        setText('client-id', state.clientId);
        break;
      case 'audio_buffer':
        if (data) onAudioBuffer(data);
        break;
      case 'heartbeat':
        setText('heartbeat', new Date(message.timestamp || Date.now()).toLocaleTimeString());
        break;
      case 'error':
        note(`server: ${data && data.message} (${data && data.code})`, 'error');
        break;
      default:
        break;
    }
  }

  function connect() {
    const url = `/stream/${repoPath}?encoding=${encoding}`;
    setText('stream-url', url);
    const source = new EventSource(url);
    source.onmessage = onMessage;
    source.onerror = () => {
      state.connected = false;
      // EventSource reconnects by itself unless the server refused the stream outright.
      if (source.readyState === EventSource.CLOSED) setStatus('closed', 'stream closed');
      else setStatus('reconnecting', 'reconnecting');
    };
  }

  // ---- the test form ---------------------------------------------------------------------------

  $('test-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('test-result');
    const body = {
      tempo: Number($('t-tempo').value),
      duration: Number($('t-duration').value),
      density: Number($('t-density').value),
      instrumentType: $('t-instrument').value,
      pattern: $('t-pattern').value,
      scale: $('t-scale').value.split(/[\s,]+/).filter(Boolean),
    };
    $('t-send').disabled = true;
    result.className = 'result';
    result.textContent = 'rendering…';
    try {
      const response = await fetch(`/stream/${repoPath}/test`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok && answer.success) {
        result.textContent = `rendered ${answer.samples} samples in ${answer.renderTimeMs} ms; `
          + `${answer.listenersNotified} listener(s) notified`;
      } else {
        result.className = 'result error';
        result.textContent = `${response.status}: ${answer.error || 'the server refused the request'}`;
      }
    } catch (e) {
      result.className = 'result error';
      result.textContent = `request failed: ${e.message}`;
    } finally {
      $('t-send').disabled = false;
    }
  });

  // ---- start -----------------------------------------------------------------------------------

  setText('repo-id', repoId || location.pathname);
  if (!repoValid) {
    setStatus('closed', 'not a repository id');
    note('the address must be /listen/{name} or /listen/{owner}/{name}', 'error');
    return;
  }
  document.title = `bandsync · ${repoId}`;
  Tone.getContext().on('statechange', showAudioState);
  showAudioState();
  connect();
})();
