// bandsync overlay: the Stream Manager's renderer for a streaming tool's browser source.
//
//   /overlay                     the default stream
//   /overlay?session=my-band     a band's stream
//   ...&token=<jwt>              the read token, in the authenticated mode
//
// It opens /ws/stream on this origin, draws the `streamState` snapshot (every layer), then
// applies each pushed change in version order. It sends nothing but pings (to notice a dead
// connection) and reconnects with backoff, redrawing from the fresh snapshot: the snapshot
// replaces whatever was missed while away. Every value is drawn with textContent and
// element.style (never markup), and every number is clamped to the contract's range, so a
// hostile layer can at worst look wrong.
//
// For tests and debugging: document.body.dataset.streamState / .version / .connected, and
// window.bandsyncOverlay.
'use strict';

(() => {
  const SESSION_RE = /^[A-Za-z0-9._\-/]{1,128}$/;
  const COLOR_RE = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$/;
  const FONT_RE = /^[A-Za-z0-9 _-]{1,64}$/;
  const IMAGE_EXT_RE = /\.(?:png|jpe?g|gif|webp|avif|svg)(?:[?#].*)?$/i;
  const PING_EVERY_MS = 15_000;
  /** No frame at all (not even a pong) for this long: the connection is dead, reconnect. */
  const SILENCE_MS = 40_000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10_000;

  const params = new URLSearchParams(window.location.search);
  const session = params.get('session');
  const token = params.get('token');
  const stage = document.getElementById('stage');
  const body = document.body;

  const st = {
    socket: null,
    connected: false,
    attempt: 0,
    reconnects: 0,
    received: 0,
    version: 0,
    /** The snapshot's version: events at or below it are already drawn. */
    snapshotVersion: 0,
    lastFrameAt: 0,
    layers: new Map(),
    assets: new Map(),
  };

  const clamp = (v, lo, hi, fallback) => (Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback);

  /** A URL the page may load: `https://`, or a relative path of the contract's characters. */
  function safeUrl(url) {
    if (typeof url !== 'string' || url.length === 0 || url.length > 2048) return null;
    if (/^https:\/\/[^\s]+$/i.test(url)) return url;
    if (/^\/?[A-Za-z0-9._\-/]+$/.test(url) && !url.startsWith('//') && !url.split('/').includes('..')) return url;
    return null;
  }

  function streamUrl() {
    const q = new URLSearchParams();
    if (session) q.set('session', session);
    if (token) q.set('token', token);
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = q.toString();
    return `${scheme}//${window.location.host}/ws/stream${query ? `?${query}` : ''}`;
  }

  // --- drawing ---------------------------------------------------------------------------

  function place(el, layer) {
    const p = layer.position || {};
    el.style.left = `${clamp(p.x, 0, 100, 0)}%`;
    el.style.top = `${clamp(p.y, 0, 100, 0)}%`;
    el.style.width = p.width == null ? '' : `${clamp(p.width, 0, 100, 0)}%`;
    el.style.height = p.height == null ? '' : `${clamp(p.height, 0, 100, 0)}%`;
    el.style.zIndex = String(Math.round(clamp(layer.zIndex, -1000, 1000, 0)));
  }

  function drawText(el, c) {
    const s = c.style || {};
    el.replaceChildren();
    el.textContent = typeof c.content === 'string' ? c.content : '';
    el.style.fontFamily = `"${FONT_RE.test(s.font) ? s.font : 'Arial'}", sans-serif`;
    el.style.setProperty('--font-size', String(clamp(s.fontSize, 1, 500, 24)));
    el.style.color = COLOR_RE.test(s.color) ? s.color : '#ffffff';
    el.style.backgroundColor = COLOR_RE.test(s.background) ? s.background : 'transparent';
    el.style.textAlign = ['left', 'center', 'right'].includes(s.align) ? s.align : 'left';
    el.style.fontWeight = s.weight === 'bold' ? 'bold' : 'normal';
  }

  /** The layer's one `<img>`, kept across updates so an unchanged source is not reloaded. */
  function imageOf(el, src) {
    let img = el.firstElementChild;
    if (!img || img.tagName !== 'IMG') {
      img = document.createElement('img');
      img.decoding = 'async';
      img.draggable = false;
      img.addEventListener('load', () => el.style.setProperty('--natural-width', String(img.naturalWidth)));
      el.replaceChildren(img);
    }
    if (img.getAttribute('src') !== src) img.setAttribute('src', src);
    return img;
  }

  function drawImage(el, c, layer) {
    const src = safeUrl(c.url) || (st.assets.get(c.assetId) || {}).url;
    if (!safeUrl(src)) { el.replaceChildren(); return; }
    const img = imageOf(el, src);
    img.alt = typeof c.alt === 'string' ? c.alt : '';
    img.style.objectFit = ['contain', 'cover', 'fill'].includes(c.fit) ? c.fit : 'contain';
    img.style.opacity = String(clamp(c.opacity, 0, 1, 1));
    const p = layer.position || {};
    el.classList.toggle('natural', p.width == null && p.height == null);
    // The redraw cleared the element's style; a loaded image does not fire `load` again.
    if (img.complete && img.naturalWidth) el.style.setProperty('--natural-width', String(img.naturalWidth));
  }

  /** An image model is drawn; anything else (a glTF model, a refused URL) is a labelled box. */
  function drawCharacter(el, c, layer) {
    const animation = typeof c.animation === 'string' ? c.animation : '';
    el.dataset.animation = animation;
    el.dataset.clip = c.animations && typeof c.animations[animation] === 'string' ? c.animations[animation] : '';
    const cls = animation.replace(/[^A-Za-z0-9_-]/g, '');
    if (cls) el.classList.add(`anim-${cls}`);
    const url = safeUrl(c.modelUrl);
    const asset = [...st.assets.values()].find((a) => a.url === url);
    const isImage = url && (asset ? /^image\//.test(asset.type) : IMAGE_EXT_RE.test(url));
    if (isImage && el.dataset.failed !== url) {
      const img = imageOf(el, url);
      img.alt = layer.name || 'character';
      img.onerror = () => { el.dataset.failed = url; drawLayer(st.layers.get(layer.id)); };
      return;
    }
    el.classList.add('model');
    el.replaceChildren();
    el.textContent = `${layer.name || 'character'}${animation ? ` · ${animation}` : ''}`;
  }

  function elementOf(id) {
    return [...stage.children].find((el) => el.dataset.layerId === id) || null;
  }

  function drawLayer(layer) {
    if (!layer || typeof layer.id !== 'string') return;
    const c = layer.content || {};
    const type = ['text', 'image', 'character'].includes(c.type) ? c.type : 'unknown';
    let el = elementOf(layer.id);
    if (el && el.dataset.type !== type) { el.remove(); el = null; }
    if (!el) {
      el = document.createElement('div');
      el.dataset.layerId = layer.id;
      el.dataset.type = type;
      stage.appendChild(el);
    }
    el.className = `layer ${type}`;
    el.style.cssText = '';
    place(el, layer);
    if (type === 'text') drawText(el, c);
    else if (type === 'image') drawImage(el, c, layer);
    else if (type === 'character') drawCharacter(el, c, layer);
    el.hidden = layer.visible === false;
  }

  function removeLayer(id) {
    st.layers.delete(id);
    const el = elementOf(id);
    if (el) el.remove();
  }

  function setStatus(status) {
    if (!status || typeof status !== 'object') return;
    if (typeof status.state === 'string') body.dataset.streamState = status.state;
  }

  function setVersion(v) {
    if (Number.isFinite(v) && v > st.version) st.version = v;
    body.dataset.version = String(st.version);
  }

  // --- events ----------------------------------------------------------------------------

  function snapshot(p) {
    const status = p.status || {};
    st.assets = new Map((Array.isArray(p.assets) ? p.assets : []).filter((a) => a && a.id).map((a) => [a.id, a]));
    st.layers = new Map((Array.isArray(p.layers) ? p.layers : []).filter((l) => l && l.id).map((l) => [l.id, l]));
    for (const el of [...stage.children]) {
      if (!st.layers.has(el.dataset.layerId)) el.remove();
    }
    st.layers.forEach(drawLayer);
    setStatus(status);
    // A fresh snapshot may be older than what we drew last (another instance answered): it
    // is the truth all the same, so its version replaces ours.
    st.version = Number.isFinite(status.version) ? status.version : 0;
    st.snapshotVersion = st.version;
    setVersion(st.version);
  }

  const handlers = {
    streamState: snapshot,
    stateUpdate: setStatus,
    layerUpdate(p) {
      if (p.deleted) { removeLayer(p.id); return; }
      st.layers.set(p.id, p);
      drawLayer(p);
    },
    layerVisibility(p) {
      const layer = st.layers.get(p.id);
      if (!layer) return;
      layer.visible = p.visible === true;
      const el = elementOf(p.id);
      if (el) el.hidden = !layer.visible;
    },
    assetUpdate(p) {
      if (p.deleted) st.assets.delete(p.id);
      else st.assets.set(p.id, p);
    },
  };

  function onMessage(raw) {
    st.received += 1;
    st.lastFrameAt = Date.now();
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (!msg || typeof msg.type !== 'string' || !msg.payload || typeof msg.payload !== 'object') return;
    const handle = Object.prototype.hasOwnProperty.call(handlers, msg.type) ? handlers[msg.type] : null;
    if (!handle) return; // preview, pong, status, quality, error: nothing to draw
    if (msg.type !== 'streamState' && Number.isFinite(msg.version)) {
      // Already part of the snapshot, or older than what is drawn: skip.
      if (msg.version <= st.snapshotVersion || msg.version < st.version) return;
    }
    handle(msg.payload);
    if (msg.type !== 'streamState') setVersion(msg.version);
  }

  // --- connection ------------------------------------------------------------------------

  let pingTimer = null;
  let retryTimer = null;

  function connect() {
    retryTimer = null;
    const socket = new WebSocket(streamUrl());
    st.socket = socket;
    socket.addEventListener('open', () => {
      st.connected = true;
      st.attempt = 0;
      st.lastFrameAt = Date.now();
      body.dataset.connected = 'true';
    });
    socket.addEventListener('message', (e) => { if (typeof e.data === 'string') onMessage(e.data); });
    socket.addEventListener('close', () => {
      if (st.socket !== socket) return;
      st.connected = false;
      body.dataset.connected = 'false';
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** st.attempt);
      st.attempt = Math.min(st.attempt + 1, 10);
      // Jitter: many overlays of one server must not all come back in the same instant.
      retryTimer = setTimeout(() => { st.reconnects += 1; connect(); }, delay * (0.5 + Math.random() / 2));
    });
  }

  function keepAlive() {
    const socket = st.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - st.lastFrameAt > SILENCE_MS) { socket.close(); return; }
    socket.send(JSON.stringify({ type: 'ping', payload: { t: Date.now() } }));
  }

  window.bandsyncOverlay = {
    get connected() { return st.connected; },
    get version() { return st.version; },
    get received() { return st.received; },
    get reconnects() { return st.reconnects; },
    /** Drops the connection as a network failure would (tests use it). */
    drop() { if (st.socket) st.socket.close(); },
  };

  body.dataset.connected = 'false';
  body.dataset.version = '0';
  if (session !== null && !SESSION_RE.test(session)) {
    // A mistyped link must not hammer the server with refused upgrades; say why instead.
    body.dataset.streamState = 'invalid-session';
    return;
  }
  pingTimer = setInterval(keepAlive, PING_EVERY_MS);
  window.addEventListener('pagehide', () => {
    clearInterval(pingTimer);
    if (retryTimer) clearTimeout(retryTimer);
  });
  connect();
})();
