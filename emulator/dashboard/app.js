// app.js -- the live dashboard (README "Dashboard"): plain ES modules, no framework (a few views of tables
// and forms need none, and nothing has to be bundled or fetched). It calls the hub's own REST routes
// (/devices, /twins, methods, /devices/query, /jobs/v2) with a service SAS token, the emulator's routes
// (/emulator/stats, /emulator/telemetry, /emulator/faults, /emulator/consumergroups, the C2D send) and reads
// /emulator/events, a Server-Sent Events stream, through fetch (so the token goes in a header, not the URL).
import { serviceToken } from './sha256.js';

const API = 'api-version=2021-04-12';
const KEY_STORE = 'iothub-emulator.service';
const state = { token: null, expiresOn: 0, hostName: '127.0.0.1', hubName: 'iothub', devices: new Map(),
  events: [], telemetry: [], listeners: new Set(), streamOk: false };

// ---- small DOM helpers (text only: ids and payloads are untrusted; no style attributes: the CSP refuses them) ----
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const pretty = (v) => JSON.stringify(v, null, 2);
function toast(text, info = false) {
  const t = $('#toast');
  t.textContent = text;
  t.className = info ? 'info' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, info ? 2500 : 8000);
}
function shortTime(iso) {
  if (!iso || iso.startsWith('0001')) return 'never';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString();
}

// ---- errors in the hub's shapes ----
export class HubError extends Error {
  constructor(status, code, message) { super(`${code}: ${message}`); this.status = status; this.code = code; this.hubMessage = message; }
}
function hubError(status, headers, text) {
  let code = headers.get('iothub-errorcode') || `HTTP ${status}`;
  let message = text;
  try {
    const j = JSON.parse(text);
    const m = j.Message ?? j.message ?? '';
    if (typeof m === 'string' && m.startsWith('ErrorCode:')) { // Envelope A: "ErrorCode:Name;text"
      const semi = m.indexOf(';');
      code = m.slice(10, semi < 0 ? undefined : semi);
      message = semi < 0 ? '' : m.slice(semi + 1);
    } else if (typeof m === 'string' && m.startsWith('{')) { // Envelope B: JSON with a numeric errorCode
      const inner = JSON.parse(m);
      code = `${inner.errorCode} ${headers.get('iothub-errorcode') || ''}`.trim();
      message = inner.message;
    } else if (m) message = m;
  } catch { /* not JSON: the text as it is */ }
  return new HubError(status, code, message);
}
function showError(where, err) {
  const text = err instanceof HubError ? `${err.code}\n${err.hubMessage}` : String(err.message || err);
  if (where) { where.textContent = text; where.className = 'error'; } else toast(text);
}

// ---- credentials: a loopback session, or the iothubowner key kept in this tab ----
function parseKey(text) {
  const t = text.trim();
  if (!t.includes('=') || t.endsWith('=') && !t.includes(';')) return { name: 'iothubowner', key: t };
  const f = Object.fromEntries(t.split(';').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  if (!f.SharedAccessKey) throw new Error('No SharedAccessKey in that connection string.');
  return { name: f.SharedAccessKeyName || 'iothubowner', key: f.SharedAccessKey };
}
let asking = null; // one prompt at a time, shared by every caller that needs the key
function askKey(why) {
  if (!asking) asking = promptKey(why).finally(() => { asking = null; });
  return asking;
}
async function promptKey(why) {
  const dlg = $('#key-dialog');
  $('#key-why').textContent = why || '';
  $('#key-error').textContent = '';
  $('#key-input').value = '';
  return new Promise((resolve) => {
    const form = $('#key-form');
    form.onsubmit = (ev) => {
      ev.preventDefault();
      try {
        const k = parseKey($('#key-input').value);
        sessionStorage.setItem(KEY_STORE, JSON.stringify(k));
        dlg.close();
        resolve();
      } catch (e) { $('#key-error').textContent = e.message; }
    };
    dlg.showModal();
    $('#key-input').focus();
  });
}
async function token() {
  const now = Date.now() / 1000;
  if (state.token && state.expiresOn - now > 300) return state.token;
  for (;;) {
    if (!state.session) { // the host name (the tokens' audience) and whether this page may skip the key
      state.session = await (await fetch('/emulator/session', { cache: 'no-store' })).json();
      state.hostName = state.session.hostName; state.hubName = state.session.hubName;
      $('#hub-name').textContent = state.hubName;
    }
    const kept = sessionStorage.getItem(KEY_STORE);
    if (kept) {
      const k = JSON.parse(kept);
      const t = serviceToken(state.hostName, k.name, k.key);
      state.token = t.token; state.expiresOn = t.expiresOn;
      $('#signout').hidden = false;
      return state.token;
    }
    const s = state.session;
    state.session = null; // fetched again next time: a fresh token
    if (s.open && s.token) { state.token = s.token; state.expiresOn = s.expiresOn; return state.token; }
    await askKey(s.reason ? `${s.reason[0].toUpperCase()}${s.reason.slice(1)}.` : '');
  }
}
export async function api(method, path, body, extra = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Authorization: await token(), ...extra };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (r.status === 401 && attempt === 0) { // a wrong key or an expired token: ask again once
      state.token = null;
      if (sessionStorage.getItem(KEY_STORE)) { sessionStorage.removeItem(KEY_STORE); await askKey('That key was refused.'); }
      continue;
    }
    if (!r.ok) throw hubError(r.status, r.headers, text);
    return { status: r.status, headers: r.headers, json: text ? JSON.parse(text) : null };
  }
}
const enc = encodeURIComponent;
function identityPath(id) {
  const [dev, mod] = id.split('/');
  return mod ? `${enc(dev)}/modules/${enc(mod)}` : enc(dev);
}

// ---- the live stream ----
async function stream() {
  let last = 0;
  for (;;) {
    try {
      const r = await fetch(`/emulator/events${last ? `?since=${last}` : ''}`, { headers: { Authorization: await token() } });
      if (r.status === 401) { state.token = null; throw new Error('unauthorized'); }
      if (!r.ok) throw hubError(r.status, r.headers, await r.text());
      setLive(true);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const rec = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = 'message', data = '';
          for (const line of rec.split('\n')) {
            if (line.startsWith('event: ')) type = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
            else if (line.startsWith('id: ')) last = Number(line.slice(4));
          }
          if (data) dispatch(type, JSON.parse(data));
        }
      }
    } catch (e) { console.warn('stream', e); }
    setLive(false);
    await new Promise((res) => setTimeout(res, 2000));
  }
}
function setLive(on) {
  state.streamOk = on;
  const b = $('#live');
  b.textContent = on ? 'live' : 'reconnecting…';
  b.className = `badge ${on ? 'on' : 'bad'}`;
}
function dispatch(type, ev) {
  if (type === 'hub') {
    state.events.push(ev);
    if (state.events.length > 500) state.events.shift();
    if (ev.type === 'connection') {
      const d = state.devices.get(ev.identity);
      if (d) { d.connectionState = ev.what === 'connected' ? 'Connected' : 'Disconnected'; d.lastActivityTime = ev.at; }
    }
  } else if (type === 'telemetry') {
    ev.identity = ev.moduleId ? `${ev.deviceId}/${ev.moduleId}` : ev.deviceId;
    state.telemetry.push(ev);
    if (state.telemetry.length > 500) state.telemetry.shift();
  } else return;
  for (const fn of state.listeners) fn(type, ev);
}
function listen(fn) { state.listeners.add(fn); return () => state.listeners.delete(fn); }

function eventLine(ev) {
  const time = h('time', { datetime: ev.at }, new Date(ev.at).toLocaleTimeString());
  if (ev.type === 'method')
    return h('li', { 'data-type': 'method' }, time, `method ${ev.what} on ${ev.identity}: ${ev.detail}`,
      ev.detail === 'answered' ? ` ${ev.status}` : '', ` (${ev.latencyMs} ms)`);
  if (ev.type === 'connection') return h('li', { 'data-type': 'connection' }, time, `${ev.identity} ${ev.what}`);
  if (ev.type === 'twin') return h('li', { 'data-type': 'twin' }, time, `twin ${ev.what} of ${ev.identity}, version ${ev.status}`);
  if (ev.type === 'c2d') return h('li', { 'data-type': 'c2d' }, time, `C2D ${ev.detail || ''} ${ev.what} for ${ev.identity}`);
  return h('li', {}, time, JSON.stringify(ev));
}
function telemetryRow(t) {
  return h('tr', { 'data-telemetry': '' }, h('td', {}, new Date(t.enqueuedTimeUtc).toLocaleTimeString()),
    h('td', {}, t.identity || t.deviceId), h('td', { class: 'num' }, `${t.partition}/${t.sequenceNumber}`),
    h('td', {}, h('code', {}, JSON.stringify(t.properties || {}))), h('td', {}, h('code', {}, t.body ?? `base64: ${t.bodyBase64}`), t.truncated ? ' …' : ''));
}

// ---- views ----
let teardown = [];
function cleanup() { for (const f of teardown) f(); teardown = []; }

async function viewDevices(main) {
  const tbody = h('tbody');
  const msg = h('p', { role: 'status' });
  const idInput = h('input', { id: 'new-device', type: 'text', placeholder: 'device id', 'aria-label': 'New device id' });
  const create = h('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    if (!id) return;
    try { await api('PUT', `/devices/${enc(id)}?${API}`, { deviceId: id }); idInput.value = ''; toast(`Created ${id}`, true); await load(); }
    catch (err) { showError(msg, err); }
  } }, h('div', { class: 'grow' }, h('label', { for: 'new-device' }, 'Create a device'), idInput), h('button', { type: 'submit' }, 'Create'));
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Devices'), create, msg,
    h('table', { id: 'devices' }, h('thead', {}, h('tr', {}, ['Device', 'Connection', 'Status', 'Last activity', 'C2D queued', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))), tbody)));
  async function action(d, what) {
    try {
      if (what === 'toggle') {
        const full = (await api('GET', `/devices/${enc(d.deviceId)}?${API}`)).json;
        full.status = full.status === 'enabled' ? 'disabled' : 'enabled';
        await api('PUT', `/devices/${enc(d.deviceId)}?${API}`, full, { 'If-Match': '*' });
      } else if (what === 'delete') {
        if (!confirm(`Delete ${d.deviceId} and its twin?`)) return;
        await api('DELETE', `/devices/${enc(d.deviceId)}?${API}`, undefined, { 'If-Match': '*' });
      } else if (what === 'copy') {
        await copyConnectionString(d.deviceId);
        return;
      }
      await load();
    } catch (err) { showError(msg, err); }
  }
  function render() {
    tbody.replaceChildren(...[...state.devices.values()].map((d) => h('tr', { 'data-device': d.deviceId },
      h('th', { scope: 'row' }, h('a', { href: `#/device/${enc(d.deviceId)}` }, d.deviceId)),
      h('td', {}, h('span', { class: `badge ${d.connectionState === 'Connected' ? 'on' : 'off'}`, 'data-state': d.connectionState }, d.connectionState)),
      h('td', {}, d.status), h('td', {}, shortTime(d.lastActivityTime)), h('td', { class: 'num' }, d.cloudToDeviceMessageCount ?? 0),
      h('td', {}, h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', onclick: () => action(d, 'toggle') }, d.status === 'enabled' ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'secondary', onclick: () => action(d, 'copy') }, 'Copy connection string'),
        h('button', { type: 'button', class: 'danger', onclick: () => action(d, 'delete') }, 'Delete'))))));
  }
  async function load() {
    try {
      const list = (await api('GET', `/devices?top=1000&${API}`)).json;
      state.devices = new Map(list.map((d) => [d.deviceId, d]));
      render();
    } catch (err) { showError(msg, err); }
  }
  teardown.push(listen((type, ev) => { if (type === 'hub' && ev.type === 'connection') render(); }));
  await load();
}

async function copyConnectionString(deviceId, moduleId) {
  const path = moduleId ? `/devices/${enc(deviceId)}/modules/${enc(moduleId)}` : `/devices/${enc(deviceId)}`;
  const d = (await api('GET', `${path}?${API}`)).json;
  const key = d.authentication?.symmetricKey?.primaryKey;
  if (!key) { toast('This identity has no symmetric key (X.509).'); return; }
  const cs = `HostName=${state.hostName};DeviceId=${deviceId}${moduleId ? `;ModuleId=${moduleId}` : ''};SharedAccessKey=${key}`;
  try { await navigator.clipboard.writeText(cs); toast('Connection string copied.', true); }
  catch { prompt('Connection string (copy it):', cs); }
}

async function viewDevice(main, identity) {
  const [dev, mod] = identity.split('/');
  const ip = identityPath(identity);
  const head = h('h2', {}, identity, ' ', h('span', { id: 'conn', class: 'badge off' }, '…'));
  const twinOut = h('pre', { id: 'twin' });
  const desired = h('textarea', { id: 'desired', 'aria-label': 'Desired properties patch (JSON)' });
  const twinMsg = h('p', { role: 'status' });
  const mName = h('input', { id: 'method-name', type: 'text', value: 'DeviceMethod' });
  const mPayload = h('textarea', { id: 'method-payload' }, '{}');
  const mTimeout = h('input', { id: 'method-timeout', type: 'number', min: '5', max: '300', value: '30' });
  const mConnect = h('input', { id: 'method-connect', type: 'number', min: '0', max: '300', value: '0' });
  const mOut = h('pre', { id: 'method-result', 'aria-live': 'polite' });
  const cBody = h('textarea', { id: 'c2d-body' }, 'hello from the dashboard');
  const cProps = h('input', { id: 'c2d-props', type: 'text', value: '{}' });
  const cMsg = h('p', { id: 'c2d-result', role: 'status' });
  const tBody = h('tbody');
  const faultsOut = h('div', { id: 'faults' });
  const evList = h('ul');
  const modules = h('section', { class: 'card gap-below', 'aria-label': 'Modules' });
  main.append(h('p', {}, h('a', { href: '#/devices' }, '← Devices')), head, modules,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'twin-h' }, h('h3', { id: 'twin-h' }, 'Twin'), twinOut,
        h('form', { onsubmit: async (e) => {
          e.preventDefault();
          let patch;
          try { patch = JSON.parse(desired.value); } catch (err) { showError(twinMsg, new Error(`Not JSON: ${err.message}`)); return; }
          try {
            const r = await api('PATCH', `/twins/${ip}?${API}`, { properties: { desired: patch } }, { 'If-Match': '*' });
            twinMsg.textContent = `Desired properties updated: version ${r.json.properties.desired.$version}.`;
            twinMsg.className = 'ok';
            showTwin(r.json);
          } catch (err) { showError(twinMsg, err); }
        } }, h('label', { for: 'desired' }, 'Desired properties patch (JSON; null removes a property)'), desired,
        h('div', { class: 'row' }, h('button', { type: 'submit', id: 'desired-send' }, 'Update desired'),
          h('button', { type: 'button', class: 'secondary', onclick: () => loadTwin() }, 'Reload'))), twinMsg),
      h('section', { class: 'card', 'aria-labelledby': 'method-h' }, h('h3', { id: 'method-h' }, 'Direct method'),
        h('form', { onsubmit: async (e) => {
          e.preventDefault();
          let payload;
          try { payload = mPayload.value.trim() ? JSON.parse(mPayload.value) : null; } catch (err) { showError(mOut, new Error(`Payload is not JSON: ${err.message}`)); return; }
          mOut.className = ''; mOut.textContent = 'Calling…';
          const t0 = performance.now();
          try {
            const r = await api('POST', `/twins/${ip}/methods?${API}`, { methodName: mName.value, payload,
              responseTimeoutInSeconds: Number(mTimeout.value), connectTimeoutInSeconds: Number(mConnect.value) });
            mOut.textContent = `status ${r.json.status} (${Math.round(performance.now() - t0)} ms)\n${pretty(r.json.payload)}`;
          } catch (err) { showError(mOut, err); }
        } }, h('label', { for: 'method-name' }, 'Method name'), mName, h('label', { for: 'method-payload' }, 'Payload (JSON)'), mPayload,
        h('div', { class: 'row' }, h('div', { class: 'grow' }, h('label', { for: 'method-timeout' }, 'Response timeout (s)'), mTimeout),
          h('div', { class: 'grow' }, h('label', { for: 'method-connect' }, 'Connect timeout (s)'), mConnect),
          h('button', { type: 'submit', id: 'method-invoke' }, 'Invoke'))), mOut),
      h('section', { class: 'card', 'aria-labelledby': 'c2d-h' }, h('h3', { id: 'c2d-h' }, 'Cloud-to-device message'),
        h('form', { onsubmit: async (e) => {
          e.preventDefault();
          let properties;
          try { properties = JSON.parse(cProps.value || '{}'); } catch (err) { showError(cMsg, new Error(`Properties are not JSON: ${err.message}`)); return; }
          try {
            const r = await api('POST', `/emulator/devices/${ip}/messages`, { body: cBody.value, properties });
            cMsg.textContent = `Queued as ${r.json.messageId}.`; cMsg.className = 'ok';
          } catch (err) { showError(cMsg, err); }
        } }, h('label', { for: 'c2d-body' }, 'Body'), cBody, h('label', { for: 'c2d-props' }, 'Application properties (JSON object of strings)'), cProps,
        h('div', { class: 'row' }, h('button', { type: 'submit', id: 'c2d-send' }, 'Send'))), cMsg),
      h('section', { class: 'card', 'aria-labelledby': 'faults-h' }, h('h3', { id: 'faults-h' }, 'Active faults'), faultsOut,
        h('h3', {}, 'Recent events'), h('div', { class: 'events' }, evList))),
    h('section', { class: 'card gap-above', 'aria-labelledby': 'tel-h' }, h('h3', { id: 'tel-h' }, 'Telemetry'),
      h('table', { id: 'telemetry' }, h('thead', {}, h('tr', {}, ['Enqueued', 'From', 'Partition/seq', 'Properties', 'Body'].map((t) => h('th', { scope: 'col' }, t)))), tBody)));

  const noMeta = (o) => JSON.parse(JSON.stringify(o || {}, (k, v) => (k === '$metadata' ? undefined : v)));
  function showTwin(t) {
    twinOut.textContent = pretty({ tags: t.tags, desired: noMeta(t.properties?.desired), reported: noMeta(t.properties?.reported) });
    const conn = $('#conn');
    conn.textContent = t.connectionState; conn.className = `badge ${t.connectionState === 'Connected' ? 'on' : 'off'}`;
    conn.dataset.state = t.connectionState;
    if (!desired.dataset.touched) {
      const d = { ...(t.properties?.desired || {}) };
      delete d.$metadata; delete d.$version;
      desired.value = pretty(d);
    }
  }
  desired.addEventListener('input', () => { desired.dataset.touched = '1'; });
  async function loadTwin() {
    try { showTwin((await api('GET', `/twins/${ip}?${API}`)).json); } catch (err) { showError(twinMsg, err); }
  }
  async function loadFaults() {
    try {
      const r = await fetch('/emulator/faults');
      const j = await r.json();
      const mine = (j.faults || []).filter((f) => !f.deviceId || f.deviceId === dev);
      faultsOut.replaceChildren(mine.length ? h('ul', {}, mine.map((f) => h('li', {}, `${f.fault} (${f.source})`,
        f.deviceId ? '' : ' on every device', f.endsInMs ? `, ends in ${Math.round(f.endsInMs / 1000)} s` : ''))) : h('p', { class: 'muted' }, 'None.'));
    } catch (err) { showError(faultsOut, err); }
  }
  async function loadTelemetry() {
    try {
      const rows = await (await fetch(`/emulator/telemetry/${enc(dev)}?top=50`)).json();
      tBody.replaceChildren(...rows.filter((t) => (t.moduleId || undefined) === mod).reverse().map(telemetryRow));
    } catch (err) { showError(tBody, err); }
  }
  const modMsg = h('p', { role: 'status' });
  async function loadModules() {
    try {
      const list = (await api('GET', `/devices/${enc(dev)}/modules?${API}`)).json;
      const mid = h('input', { id: 'new-module', type: 'text', placeholder: 'module id', 'aria-label': 'New module id' });
      const act = async (fn) => { try { await fn(); await loadModules(); } catch (err) { showError(modMsg, err); } };
      modules.replaceChildren(h('h3', {}, 'Modules'),
        list.length ? h('table', { id: 'modules' }, h('thead', {}, h('tr', {}, ['Module', 'Connection', 'Last activity', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, list.map((m) => h('tr', { 'data-module': m.moduleId },
            h('th', { scope: 'row' }, h('a', { href: `#/device/${enc(dev)}/${enc(m.moduleId)}` }, m.moduleId)),
            h('td', {}, h('span', { class: `badge ${m.connectionState === 'Connected' ? 'on' : 'off'}`, 'data-state': m.connectionState }, m.connectionState)),
            h('td', {}, shortTime(m.lastActivityTime)),
            h('td', {}, h('div', { class: 'row' },
              h('button', { type: 'button', class: 'secondary', onclick: () => copyConnectionString(dev, m.moduleId).catch((err) => showError(modMsg, err)) }, 'Copy connection string'),
              h('button', { type: 'button', class: 'danger', onclick: () => confirm(`Delete module ${m.moduleId}?`) && act(() => api('DELETE', `/devices/${enc(dev)}/modules/${enc(m.moduleId)}?${API}`, undefined, { 'If-Match': '*' })) }, 'Delete'))))))) : h('p', { class: 'muted' }, 'No modules.'),
        h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); const id = mid.value.trim(); if (id) act(() => api('PUT', `/devices/${enc(dev)}/modules/${enc(id)}?${API}`, { deviceId: dev, moduleId: id })); } },
          h('div', { class: 'grow' }, h('label', { for: 'new-module' }, 'Create a module'), mid), h('button', { type: 'submit' }, 'Create module')), modMsg);
    } catch (err) { showError(modMsg, err); }
  }
  if (!mod) loadModules();
  for (const ev of state.events.filter((e) => e.identity === identity).slice(-50)) evList.prepend(eventLine(ev));
  teardown.push(listen((type, ev) => {
    if (ev.identity !== identity) return;
    if (type === 'telemetry') tBody.prepend(telemetryRow(ev));
    else {
      evList.prepend(eventLine(ev));
      if (ev.type === 'twin' || ev.type === 'connection') loadTwin();
    }
  }));
  if (!mod) teardown.push(listen((type, ev) => { if (type === 'hub' && ev.type === 'connection' && ev.identity.startsWith(`${dev}/`)) loadModules(); }));
  const timer = setInterval(loadFaults, 3000);
  teardown.push(() => clearInterval(timer));
  await Promise.all([loadTwin(), loadFaults(), loadTelemetry()]);
}

async function viewHub(main) {
  const counters = h('div', { class: 'counters', id: 'counters' });
  const parts = h('tbody');
  const groups = h('ul', { id: 'groups' });
  const gName = h('input', { id: 'group-name', type: 'text', placeholder: 'consumer group name' });
  const gMsg = h('p', { role: 'status' });
  const jobQuery = h('input', { id: 'job-query', type: 'text', value: "deviceId IN ['device1']" });
  const jobKind = h('select', { id: 'job-kind' }, h('option', { value: 'method' }, 'Direct method'), h('option', { value: 'twin' }, 'Twin update (desired)'));
  const jobArg = h('input', { id: 'job-arg', type: 'text', value: 'DeviceMethod' });
  const jobPayload = h('input', { id: 'job-payload', type: 'text', value: '{}' });
  const jobOut = h('div', { id: 'job-progress', 'aria-live': 'polite' });
  main.append(h('h2', {}, 'Hub'), counters,
    h('div', { class: 'grid gap-above' },
      h('section', { class: 'card' }, h('h3', {}, 'Event log (Event Hub-compatible endpoint)'),
        h('table', {}, h('thead', {}, h('tr', {}, ['Partition', 'First seq', 'Last seq', 'Last enqueued'].map((t) => h('th', { scope: 'col' }, t)))), parts)),
      h('section', { class: 'card' }, h('h3', {}, 'Consumer groups'), groups,
        h('form', { class: 'row', onsubmit: async (e) => {
          e.preventDefault();
          try { await api('PUT', `/emulator/consumergroups/${enc(gName.value.trim())}`); gName.value = ''; await load(); }
          catch (err) { showError(gMsg, err); }
        } }, h('div', { class: 'grow' }, h('label', { for: 'group-name' }, 'Add a consumer group'), gName), h('button', { type: 'submit' }, 'Add')), gMsg),
      h('section', { class: 'card' }, h('h3', {}, 'Run a job on many devices'),
        h('form', { onsubmit: (e) => { e.preventDefault(); runJob(); } },
          h('label', { for: 'job-query' }, 'Devices (query condition)'), jobQuery,
          h('label', { for: 'job-kind' }, 'Action'), jobKind,
          h('label', { for: 'job-arg' }, 'Method name (method jobs)'), jobArg,
          h('label', { for: 'job-payload' }, 'Payload, or the desired patch (JSON)'), jobPayload,
          h('div', { class: 'row' }, h('button', { type: 'submit', id: 'job-run' }, 'Start job'))), jobOut)));
  let prev = null;
  async function load() {
    try {
      const s = (await api('GET', '/emulator/stats')).json;
      const now = performance.now();
      const rate = prev ? ((s.events.method - prev.s.events.method) * 1000 / (now - prev.t)) : 0;
      prev = { s, t: now };
      const c = (label, value, id) => h('div', { class: 'counter' }, h('b', { id }, value), h('span', {}, label));
      counters.replaceChildren(c('devices', s.devices, 'c-devices'), c('connections', s.connections, 'c-connections'),
        c('method calls / s', rate.toFixed(1), 'c-rate'), c('method calls (total)', s.events.method, 'c-calls'),
        c('calls pending', s.callsPending, 'c-pending'), c('telemetry received', s.telemetryReceived, 'c-telemetry'),
        c('twin changes', s.events.twin, 'c-twin'), c('C2D events', s.events.c2d, 'c-c2d'), c('dashboard streams', s.streams, 'c-streams'));
      parts.replaceChildren(...s.eventLog.partitions.map((p) => h('tr', {}, h('td', { class: 'num' }, p.partition),
        h('td', { class: 'num' }, p.empty ? '–' : p.beginSequenceNumber), h('td', { class: 'num' }, p.lastSequenceNumber < 0 ? '–' : p.lastSequenceNumber),
        h('td', {}, p.lastEnqueuedTimeMs ? new Date(p.lastEnqueuedTimeMs).toLocaleTimeString() : 'never'))));
      groups.replaceChildren(...s.eventLog.consumerGroups.map((g) => h('li', {}, g, ' ', g === '$Default' ? '' :
        h('button', { type: 'button', class: 'secondary', 'aria-label': `Delete consumer group ${g}`, onclick: async () => {
          try { await api('DELETE', `/emulator/consumergroups/${enc(g)}`); await load(); } catch (err) { showError(gMsg, err); }
        } }, 'Delete'))));
    } catch (err) { showError(gMsg, err); }
  }
  async function runJob() {
    let payload;
    try { payload = JSON.parse(jobPayload.value || '{}'); } catch (err) { showError(jobOut, new Error(`Not JSON: ${err.message}`)); return; }
    const jobId = `dashboard-${Date.now()}`;
    const body = { jobId, queryCondition: jobQuery.value, maxExecutionTimeInSeconds: 3600 };
    if (jobKind.value === 'method') Object.assign(body, { type: 'scheduleDeviceMethod', cloudToDeviceMethod: { methodName: jobArg.value, payload, responseTimeoutInSeconds: 30 } });
    else Object.assign(body, { type: 'scheduleUpdateTwin', updateTwin: { properties: { desired: payload } } });
    const bar = h('progress', { max: '1', value: '0', 'aria-label': 'Job progress' });
    const line = h('p', {}, `Job ${jobId}: starting…`);
    jobOut.replaceChildren(line, bar);
    try {
      let j = (await api('PUT', `/jobs/v2/${enc(jobId)}?${API}`, body)).json;
      while (!['completed', 'failed', 'cancelled'].includes(j.status)) {
        const st = j.deviceJobStatistics || {};
        bar.max = String(st.deviceCount || 1);
        bar.value = String((st.succeededCount || 0) + (st.failedCount || 0));
        line.textContent = `Job ${jobId}: ${j.status}, ${bar.value} of ${st.deviceCount ?? '?'} devices done`;
        await new Promise((res) => setTimeout(res, 500));
        j = (await api('GET', `/jobs/v2/${enc(jobId)}?${API}`)).json;
      }
      const st = j.deviceJobStatistics || {};
      bar.max = String(st.deviceCount || 1); bar.value = bar.max;
      line.textContent = `Job ${jobId}: ${j.status}; ${st.succeededCount} succeeded, ${st.failedCount} failed of ${st.deviceCount}${j.failureReason ? ` (${j.failureReason})` : ''}`;
    } catch (err) { showError(line, err); }
  }
  const timer = setInterval(load, 2000);
  teardown.push(() => clearInterval(timer));
  await load();
}

async function viewQuery(main) {
  const q = h('textarea', { id: 'query', 'aria-label': 'Query' }, 'SELECT * FROM devices');
  const out = h('pre', { id: 'query-result' });
  const msg = h('p', { role: 'status' });
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Query'),
    h('form', { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const rows = [];
        let cont;
        do {
          const r = await api('POST', `/devices/query?${API}`, { query: q.value }, cont ? { 'x-ms-continuation': cont } : {});
          rows.push(...r.json);
          cont = r.headers.get('x-ms-continuation');
        } while (cont && rows.length < 5000);
        msg.textContent = `${rows.length} row(s).`; msg.className = 'ok';
        out.textContent = pretty(rows);
      } catch (err) { showError(msg, err); out.textContent = ''; }
    } }, h('label', { for: 'query' }, 'The twin query language (Ctrl+Enter runs it)'), q,
    h('div', { class: 'row' }, h('button', { type: 'submit', id: 'query-run' }, 'Run'))), msg, out));
  q.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) q.form.requestSubmit(); });
}

async function viewEvents(main) {
  const list = h('ul', { id: 'event-list' });
  const tBody = h('tbody');
  main.append(h('div', { class: 'grid' },
    h('section', { class: 'card' }, h('h2', {}, 'Hub events'), h('div', { class: 'events' }, list)),
    h('section', { class: 'card' }, h('h2', {}, 'Telemetry'), h('div', { class: 'events' },
      h('table', { id: 'all-telemetry' }, h('thead', {}, h('tr', {}, ['Enqueued', 'From', 'Partition/seq', 'Properties', 'Body'].map((t) => h('th', { scope: 'col' }, t)))), tBody)))));
  for (const ev of state.events.slice(-200)) list.prepend(eventLine(ev));
  for (const t of state.telemetry.slice(-100)) tBody.prepend(telemetryRow(t));
  teardown.push(listen((type, ev) => { if (type === 'hub') list.prepend(eventLine(ev)); else tBody.prepend(telemetryRow(ev)); }));
}

async function route() {
  cleanup();
  const main = $('#main');
  main.replaceChildren();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  const view = parts[0] || 'devices';
  for (const a of document.querySelectorAll('nav a'))
    if (a.dataset.view === view || (view === 'device' && a.dataset.view === 'devices')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  try {
    if (view === 'device' && parts[1]) await viewDevice(main, parts.slice(1, 3).join('/'));
    else if (view === 'hub') await viewHub(main);
    else if (view === 'query') await viewQuery(main);
    else if (view === 'events') await viewEvents(main);
    else await viewDevices(main);
  } catch (err) { showError(null, err); }
  document.title = `${state.hubName}: ${view} · IoT Hub emulator`;
}

$('#signout').addEventListener('click', () => { sessionStorage.removeItem(KEY_STORE); state.token = null; location.reload(); });
window.addEventListener('hashchange', route);
token().then(() => { stream(); route(); }).catch((err) => showError(null, err));
