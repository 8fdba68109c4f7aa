// bandsync stream operator: manages one stream of the Stream Manager (section 17).
//
//   /operator                   the default stream
//   /operator?session=my-band   a band's stream (also settable in the page)
//   ...&token=<jwt>             a read token for /ws/stream in the authenticated mode
//
// Writes go to the REST routes with `Authorization: Bearer <token>`; the token is typed once
// and kept in sessionStorage (this tab only, gone when it closes), never in the URL. The
// page shows every answer, and every refusal verbatim (`code` and `error`). It follows the
// stream live over /ws/stream (the same events the overlay gets), so changes made elsewhere
// show here too, and previews the overlay itself in an iframe. No markup is built from data:
// every name and text goes in with textContent.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'bandsync.operator.token';
  const SESSION_RE = /^[A-Za-z0-9._\-/]{1,128}$/;
  const PING_EVERY_MS = 15_000;
  const LOG_MAX = 100;
  const params = new URLSearchParams(window.location.search);

  const st = {
    session: params.get('session') || '',
    readToken: params.get('token') || '',
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    status: null,
    statusAt: 0,
    layers: new Map(),
    assets: new Map(),
    version: 0,
    snapshotVersion: 0,
    socket: null,
    connected: false,
    attempt: 0,
    errors: [],
  };

  // --- output ----------------------------------------------------------------------------

  function log(text, level) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
    if (level) li.className = level;
    $('log').prepend(li);
    while ($('log').children.length > LOG_MAX) $('log').lastElementChild.remove();
  }

  function result(text, isError) {
    $('result').textContent = text;
    $('result').classList.toggle('error', Boolean(isError));
    log(text, isError ? 'error' : '');
  }

  class ApiError extends Error {}

  /** The server's refusal as it sent it: status, `code`, `error`, and the details it names. */
  function describeError(status, data) {
    if (!data || typeof data !== 'object') return `${status}: the server answered without a JSON body`;
    let text = `${status} ${data.code || ''}: ${data.error || ''}`;
    if (data.field) text += ` (field: ${data.field})`;
    if (Array.isArray(data.layers)) text += ` (layers: ${data.layers.join(', ')})`;
    return text;
  }

  /** One REST call on the current stream; shows and throws a refusal. */
  async function api(method, path, body) {
    const headers = {};
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const url = st.session ? `${path}?session=${encodeURIComponent(st.session)}` : path;
    let res;
    try {
      res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(60_000) });
    } catch (e) {
      result(`${method} ${path}: ${e.message}`, true);
      throw new ApiError(e.message);
    }
    let data = null;
    try { data = await res.json(); } catch { /* described below */ }
    if (!res.ok || !data || data.success !== true) {
      const text = describeError(res.status, data);
      st.errors.push(text);
      result(`${method} ${path}: ${text}`, true);
      throw new ApiError(text);
    }
    return data;
  }

  /** Runs a click's call; a refusal is already shown, so it is not raised again. */
  const quietly = (promise) => promise.catch((e) => { if (!(e instanceof ApiError)) result(String(e), true); });

  // --- drawing ---------------------------------------------------------------------------

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function button(text, action, id) {
    const b = el('button', text);
    b.type = 'button';
    b.dataset.action = action;
    b.dataset.id = id;
    return b;
  }

  const ALLOWED = { start: ['idle', 'paused', 'stopped'], pause: ['live'], stop: ['live', 'paused'], reset: null };

  function drawStatus() {
    const s = st.status || {};
    $('state').textContent = s.state || '–';
    $('state').dataset.state = s.state || 'unknown';
    $('version').textContent = String(st.version || s.version || 0);
    for (const [action, from] of Object.entries(ALLOWED)) {
      $(action).disabled = Boolean(from && s.state && !from.includes(s.state));
    }
    drawLiveTime();
  }

  function drawLiveTime() {
    const s = st.status;
    if (!s || !Number.isFinite(s.liveMs)) { $('live-time').textContent = '–'; return; }
    const ms = s.liveMs + (s.state === 'live' ? Date.now() - st.statusAt : 0);
    const secs = Math.floor(ms / 1000);
    $('live-time').textContent = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
  }

  const byZ = (a, b) => (a.zIndex - b.zIndex) || ((a.createdAt || 0) - (b.createdAt || 0));

  function describeLayer(l) {
    const c = l.content || {};
    const p = l.position || {};
    const what = c.type === 'text' ? `“${c.content || ''}”` : c.type === 'image' ? (st.assets.get(c.assetId) || {}).name || c.assetId
      : `${c.modelUrl} · ${c.animation}`;
    return `${l.type} · z ${l.zIndex} · ${p.x},${p.y} · ${what}`;
  }

  function drawLayers() {
    const list = $('layers');
    list.replaceChildren();
    for (const l of [...st.layers.values()].sort(byZ)) {
      const li = el('li');
      li.dataset.layerId = l.id;
      li.dataset.visible = String(l.visible !== false);
      const what = el('span', undefined, 'what');
      what.append(el('strong', l.name || l.id), el('br'), el('span', describeLayer(l), 'meta'));
      li.append(what, button(l.visible === false ? 'Show' : 'Hide', 'toggle', l.id),
        button('Edit', 'edit', l.id), button('Delete', 'delete', l.id));
      list.append(li);
    }
  }

  function drawAssets() {
    const list = $('assets');
    list.replaceChildren();
    const select = $('f-asset');
    const chosen = select.value;
    select.replaceChildren();
    for (const a of [...st.assets.values()].sort((x, y) => (x.createdAt || 0) - (y.createdAt || 0))) {
      const li = el('li');
      li.dataset.assetId = a.id;
      if (/^image\//.test(a.type) && /^\/stream\/assets\/ast_[0-9a-f]+\/content$/.test(a.url)) {
        const img = el('img');
        img.src = a.url;
        img.alt = '';
        li.append(img);
        const option = el('option', a.name);
        option.value = a.id;
        select.append(option);
      }
      const what = el('span', undefined, 'what');
      what.append(el('strong', a.name), el('br'), el('span', `${a.type} · ${a.size} bytes · ${a.id}`, 'meta'));
      li.append(what, button('Delete', 'delete-asset', a.id));
      list.append(li);
    }
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }

  function drawAll() { drawStatus(); drawLayers(); drawAssets(); }

  // --- the stream's model: REST answers and pushed events --------------------------------

  function setStatus(status) {
    st.status = status;
    st.statusAt = Date.now();
    if (Number.isFinite(status.version) && status.version > st.version) st.version = status.version;
  }

  /** Replaces the whole model: a snapshot, the REST reads, or `reset`'s answer. */
  function load(status, layers, assets) {
    if (status) setStatus(status);
    if (layers) st.layers = new Map(layers.map((l) => [l.id, l]));
    if (assets) st.assets = new Map(assets.map((a) => [a.id, a]));
    drawAll();
  }

  function snapshot(p) {
    st.version = (p.status && p.status.version) || 0;
    st.snapshotVersion = st.version;
    load(p.status || {}, p.layers || [], p.assets || []);
  }

  const events = {
    streamState: snapshot,
    stateUpdate(p) { setStatus(p); drawStatus(); },
    layerUpdate(p) {
      if (p.deleted) st.layers.delete(p.id); else st.layers.set(p.id, p);
      drawLayers();
    },
    layerVisibility(p) {
      const l = st.layers.get(p.id);
      if (l) { l.visible = p.visible === true; drawLayers(); }
    },
    assetUpdate(p) {
      if (p.deleted) st.assets.delete(p.id); else st.assets.set(p.id, p);
      drawAssets();
    },
  };

  function onMessage(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (!msg || !msg.payload || !Object.prototype.hasOwnProperty.call(events, msg.type)) return;
    if (msg.type !== 'streamState' && Number.isFinite(msg.version)) {
      if (msg.version <= st.snapshotVersion || msg.version < st.version) return;
      st.version = msg.version;
    }
    events[msg.type](msg.payload);
    $('version').textContent = String(st.version);
  }

  function connect() {
    const q = new URLSearchParams();
    if (st.session) q.set('session', st.session);
    if (st.readToken) q.set('token', st.readToken);
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${window.location.host}/ws/stream${q.toString() ? `?${q}` : ''}`);
    st.socket = socket;
    $('conn').textContent = 'connecting';
    $('conn').dataset.state = 'connecting';
    socket.addEventListener('open', () => {
      st.connected = true;
      st.attempt = 0;
      $('conn').textContent = 'live updates';
      $('conn').dataset.state = 'connected';
    });
    socket.addEventListener('message', (e) => { if (typeof e.data === 'string') onMessage(e.data); });
    socket.addEventListener('close', () => {
      if (st.socket !== socket) return; // replaced by a new session's socket
      st.connected = false;
      $('conn').textContent = 'reconnecting';
      $('conn').dataset.state = 'connecting';
      const delay = Math.min(10_000, 500 * 2 ** st.attempt) * (0.5 + Math.random() / 2);
      st.attempt = Math.min(st.attempt + 1, 10);
      setTimeout(() => { if (st.socket === socket) connect(); }, delay);
    });
  }

  /** Loads the whole stream over REST (the socket's snapshot may come first or later). */
  async function refresh() {
    const [status, layers, assets] = await Promise.all([
      api('GET', '/stream/status'), api('GET', '/stream/layers'), api('GET', '/stream/assets'),
    ]);
    if (status.version >= st.version) load(status, layers.layers || [], assets.assets || []);
  }

  function applyStream() {
    $('stream-name').textContent = st.session || 'default stream';
    const q = new URLSearchParams();
    if (st.session) q.set('session', st.session);
    if (st.readToken) q.set('token', st.readToken);
    $('preview').src = `/overlay${q.toString() ? `?${q}` : ''}`;
    st.version = 0;
    st.snapshotVersion = 0;
    const old = st.socket;
    st.socket = null;
    if (old) old.close();
    connect();
    quietly(refresh());
  }

  // --- the layer form --------------------------------------------------------------------

  function showKind() {
    const kind = $('f-type').value;
    for (const fs of document.querySelectorAll('#layer-form fieldset')) fs.hidden = fs.dataset.kind !== kind;
  }

  function num(id) {
    const v = $(id).value.trim();
    return v === '' ? null : Number(v);
  }

  function layerBody() {
    const type = $('f-type').value;
    const body = {
      visible: $('f-visible').checked,
      position: { x: num('f-x') ?? 0, y: num('f-y') ?? 0, width: num('f-w'), height: num('f-h') },
    };
    const name = $('f-name').value.trim();
    if (name) body.name = name;
    if (num('f-z') !== null) body.zIndex = num('f-z');
    if (type === 'text') {
      const style = { font: $('f-font').value.trim(), fontSize: num('f-size') ?? 24, color: $('f-color').value.trim(),
        align: $('f-align').value, weight: $('f-weight').value };
      if ($('f-bg').value.trim()) style.background = $('f-bg').value.trim();
      body.content = { type, content: $('f-text').value, style };
    } else if (type === 'image') {
      body.content = { type, assetId: $('f-asset').value, alt: $('f-alt').value, fit: $('f-fit').value,
        opacity: num('f-opacity') ?? 1 };
    } else {
      const animations = {};
      for (const line of $('f-animations').value.split('\n')) {
        const at = line.indexOf('=');
        if (at > 0) animations[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      body.content = { type, modelUrl: $('f-model').value.trim(), animations, animation: $('f-animation').value.trim() };
    }
    return body;
  }

  function editLayer(l) {
    const c = l.content || {};
    const p = l.position || {};
    const s = c.style || {};
    const set = (id, v) => { $(id).value = v == null ? '' : String(v); };
    formMode(l);
    set('f-type', c.type); set('f-name', l.name); set('f-z', l.zIndex);
    $('f-visible').checked = l.visible !== false;
    set('f-x', p.x); set('f-y', p.y); set('f-w', p.width); set('f-h', p.height);
    set('f-text', c.content); set('f-font', s.font); set('f-size', s.fontSize); set('f-color', s.color);
    set('f-bg', s.background); set('f-align', s.align || 'left'); set('f-weight', s.weight || 'normal');
    if (c.type === 'image') { set('f-asset', c.assetId); set('f-alt', c.alt); set('f-fit', c.fit); set('f-opacity', c.opacity); }
    if (c.type === 'character') {
      set('f-model', c.modelUrl); set('f-animation', c.animation);
      set('f-animations', Object.entries(c.animations || {}).map(([k, v]) => `${k}=${v}`).join('\n'));
    }
    showKind();
    $('layer-form').scrollIntoView({ block: 'nearest' });
  }

  /** The form edits layer `l`, or makes a new layer without one. */
  function formMode(l) {
    $('f-id').value = l ? l.id : '';
    $('form-title').textContent = l ? `Edit layer ${l.name} (${l.id})` : 'New layer';
    $('f-submit').textContent = l ? 'Save layer' : 'Create layer';
    $('f-cancel').hidden = !l;
  }

  async function submitLayer() {
    const id = $('f-id').value;
    const answer = id
      ? await api('PUT', `/stream/layers/${encodeURIComponent(id)}`, layerBody())
      : await api('POST', '/stream/layers', layerBody());
    st.layers.set(answer.layer.id, answer.layer);
    drawLayers();
    result(`${id ? 'saved' : 'created'} layer ${answer.layer.name} (${answer.layer.id})`);
    if (id) formMode(null);
  }

  // --- wiring ----------------------------------------------------------------------------

  async function control(action) {
    const body = action === 'start' && $('quality').value ? { quality: $('quality').value } : undefined;
    const answer = await api('POST', `/stream/${action}`, body);
    load(answer, Array.isArray(answer.layerList) ? answer.layerList : null, null);
    result(`${action}: the stream is ${answer.state}`);
  }

  async function onLayerClick(action, id) {
    const l = st.layers.get(id);
    if (!l) return;
    if (action === 'edit') { editLayer(l); return; }
    const path = `/stream/layers/${encodeURIComponent(id)}`;
    if (action === 'toggle') {
      const answer = await api('PATCH', `${path}/visibility`, { visible: l.visible === false });
      st.layers.set(id, answer.layer);
      result(`layer ${answer.layer.name} ${answer.layer.visible ? 'shown' : 'hidden'}`);
    } else if (action === 'delete') {
      await api('DELETE', path);
      st.layers.delete(id);
      result(`deleted layer ${l.name} (${id})`);
    }
    drawLayers();
  }

  async function upload() {
    const file = $('u-file').files[0];
    if (!file) { result('choose a file to upload', true); return; }
    const form = new FormData();
    if ($('u-name').value.trim()) form.append('name', $('u-name').value.trim());
    form.append('file', file, file.name);
    const answer = await api('POST', '/stream/assets/upload', form);
    st.assets.set(answer.asset.id, answer.asset);
    drawAssets();
    $('upload').reset();
    result(`uploaded ${answer.asset.name} (${answer.asset.type}, ${answer.asset.size} bytes)`);
  }

  async function deleteAsset(id) {
    await api('DELETE', `/stream/assets/${encodeURIComponent(id)}`);
    st.assets.delete(id);
    drawAssets();
    result(`deleted asset ${id}`);
  }

  $('access').addEventListener('submit', (e) => {
    e.preventDefault();
    const session = $('session').value.trim();
    if (session && !SESSION_RE.test(session)) {
      result('a session id is 1 to 128 characters of A-Z a-z 0-9 . _ - /', true);
      return;
    }
    st.token = $('token').value.trim();
    if (st.token) sessionStorage.setItem(TOKEN_KEY, st.token); else sessionStorage.removeItem(TOKEN_KEY);
    if (session !== st.session) {
      st.session = session;
      const q = new URLSearchParams(window.location.search);
      if (session) q.set('session', session); else q.delete('session');
      window.history.replaceState(null, '', `/operator${q.toString() ? `?${q}` : ''}`);
      applyStream();
    }
    result(st.token ? 'token set for this tab' : 'no token: writes will be refused');
  });
  for (const action of Object.keys(ALLOWED)) $(action).addEventListener('click', () => quietly(control(action)));
  $('layers').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (b) quietly(onLayerClick(b.dataset.action, b.dataset.id));
  });
  $('assets').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action="delete-asset"]');
    if (b) quietly(deleteAsset(b.dataset.id));
  });
  $('layer-form').addEventListener('submit', (e) => { e.preventDefault(); quietly(submitLayer()); });
  $('f-cancel').addEventListener('click', () => formMode(null));
  $('f-type').addEventListener('change', showKind);
  $('upload').addEventListener('submit', (e) => { e.preventDefault(); quietly(upload()); });

  window.bandsyncOperator = {
    get connected() { return st.connected; },
    get version() { return st.version; },
    get errors() { return [...st.errors]; },
    get state() { return st.status && st.status.state; },
    layers: () => [...st.layers.values()],
    assets: () => [...st.assets.values()],
  };

  $('token').value = st.token;
  $('session').value = st.session;
  if (st.session && !SESSION_RE.test(st.session)) {
    result(`invalid session id in the URL: ${st.session}`, true);
    return;
  }
  let ticks = 0;
  setInterval(() => {
    drawLiveTime();
    ticks += 1;
    if (ticks % (PING_EVERY_MS / 1000) === 0 && st.socket && st.socket.readyState === WebSocket.OPEN) {
      st.socket.send(JSON.stringify({ type: 'ping', payload: { t: Date.now() } }));
    }
  }, 1000);
  showKind();
  applyStream();
})();
