/* The operators' console (docs/operations.md "The console"). Plain DOM, no framework, no build
 * step. Rules: every value from the API goes in as text (textContent, createTextNode,
 * setAttribute of a non-script attribute), never as HTML; the token lives in this tab's
 * sessionStorage and travels only in the Authorization header. Charts are small SVG of our own;
 * each line carries its numbers in data-values, which the browser tests read. */
'use strict';

const COLORS = ['#2563eb', '#16a34a', '#f59e0b', '#9333ea', '#dc2626'];
const SVGNS = 'http://www.w3.org/2000/svg';
const WINDOW_S = 900;
const ROLES = {
  functions: ['admin', 'developer', 'operator'],
  invoke: ['admin', 'developer', 'invoker'],
  logs: ['admin', 'developer'],
  doctor: ['admin', 'operator'],
  usage: ['admin', 'developer', 'operator'],
};

const S = {
  token: sessionStorage.getItem('ignis.token'),
  role: null,
  name: null,
  timers: [],
  aborts: [],
  page: null,
};

const $ = (id) => document.getElementById(id);
const may = (what) => ROLES[what].includes(S.role);

/* An element with text children only: strings become text nodes. */
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${status} ${body.error.code}: ${body.error.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, { Authorization: `Bearer ${S.token}` });
  const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store', credentials: 'omit' }));
  if (r.status === 401 && S.role) {
    signOut('The server no longer accepts this token (401): sign in again.');
    throw new ApiError(401, null);
  }
  return r;
}

async function apiJSON(path) {
  const r = await api(path);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

/* ---- timers that belong to the page shown ---- */

function every(ms, fn) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return; /* a hidden tab costs the daemon nothing */
    busy = true;
    try { await fn(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) console.warn(e); }
    busy = false;
  };
  tick();
  S.timers.push(setInterval(tick, ms));
}

function leavePage() {
  S.timers.forEach(clearInterval);
  S.timers = [];
  S.aborts.forEach((a) => a.abort());
  S.aborts = [];
}

/* ---- charts ---- */

function fmt(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (v >= 100) return v.toFixed(0);
  return String(Math.round(v * 100) / 100);
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/* Draws lines of series = [{name, values}] over times t (epoch s) into node. opts.window: the
 * seconds the x axis spans (ending now); opts.bars: bars instead of lines; opts.spark: no axes. */
function chart(node, t, series, opts = {}) {
  const W = opts.spark ? 120 : 600, H = opts.spark ? 28 : 150;
  const padL = opts.spark ? 1 : 40, padB = opts.spark ? 1 : 16, padT = opts.spark ? 2 : 6, padR = 4;
  const now = t.length ? t[t.length - 1] : Date.now() / 1000;
  /* The axis spans what is held, at least two minutes and at most the window: a daemon that
   * just started shows its first seconds readably, not as a sliver at the right edge. */
  const held = t.length ? now - t[0] : 0;
  const t0 = opts.window ? now - Math.min(opts.window, Math.max(120, held)) : (t.length ? t[0] : now - 1);
  const span = Math.max(1, now - t0);
  let max = 0;
  for (const s of series) for (const v of s.values) if (v > max) max = v;
  const top = max > 0 ? max * 1.1 : 1;
  const x = (ts) => padL + ((ts - t0) / span) * (W - padL - padR);
  const y = (v) => H - padB - (v / top) * (H - padB - padT);
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'data-t': t.join(',') });
  if (opts.spark) svg.append(svgEl('line', { x1: 0, y1: H - padB, x2: W, y2: H - padB, stroke: '#e3e6ec' }));
  if (!opts.spark) {
    svg.append(svgEl('line', { x1: padL, y1: H - padB, x2: W - padR, y2: H - padB, stroke: '#d9dde5' }));
    svg.append(svgEl('line', { x1: padL, y1: padT, x2: W - padR, y2: padT, stroke: '#eef0f4' }));
    const lab = (txt, xx, yy, anchor) => {
      const e = svgEl('text', { x: xx, y: yy, 'font-size': 10, fill: '#5b6475', 'text-anchor': anchor });
      e.textContent = txt;
      svg.append(e);
    };
    lab(fmt(top), padL - 4, padT + 8, 'end');
    lab('0', padL - 4, H - padB, 'end');
    const mins = Math.round(span / 60);
    lab(mins >= 1 ? `-${mins} min` : `-${Math.round(span)} s`, padL, H - 3, 'start');
    lab('now', W - padR, H - 3, 'end');
  }
  series.forEach((s, i) => {
    const color = COLORS[(s.color ?? i) % COLORS.length];
    if (opts.bars) {
      const bw = Math.max(1, (W - padL - padR) / Math.max(1, t.length) - 2);
      const g = svgEl('g', { 'data-name': s.name, 'data-values': s.values.join(',') });
      s.values.forEach((v, j) => {
        const xx = padL + j * (bw + 2);
        g.append(svgEl('rect', { x: xx, y: y(v), width: bw, height: H - padB - y(v), fill: color }));
      });
      svg.append(g);
      return;
    }
    const pts = s.values.map((v, j) => `${x(t[j]).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    if (s.values.length) {
      const j = s.values.length - 1;
      svg.append(svgEl('circle', { cx: x(t[j]).toFixed(1), cy: y(s.values[j]).toFixed(1), r: opts.spark ? 1.5 : 2, fill: color }));
    }
    svg.append(svgEl('polyline', {
      points: pts, fill: 'none', stroke: color, 'stroke-width': opts.spark ? 1.2 : 1.5,
      'stroke-linejoin': 'round', 'vector-effect': 'non-scaling-stroke', 'stroke-dasharray': s.dash ? '5 3' : 'none',
      'data-name': s.name, 'data-values': s.values.join(','),
    }));
  });
  clear(node).append(svg);
  if (!opts.spark && series.length > 1) {
    const legend = el('div', { class: 'legend' });
    series.forEach((s, i) => legend.append(el('span', {}, el('i', { class: `c${(s.color ?? i) % COLORS.length}` }), s.name)));
    node.append(legend);
  }
}

function card(k, v) {
  return el('div', { class: 'card' }, el('div', { class: 'k', text: k }), el('div', { class: 'v', text: String(v) }));
}

/* ---- sign-in ---- */

function show(page) {
  for (const p of ['signin', 'overview', 'function', 'usage']) $(`page-${p}`).hidden = p !== page;
  S.page = page;
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.id === `nav-${page}`);
}

function signOut(message) {
  leavePage();
  sessionStorage.removeItem('ignis.token');
  S.token = null;
  S.role = null;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('whoami').textContent = '';
  $('signin-error').textContent = message || '';
  show('signin');
}

async function signIn(token) {
  S.token = token;
  let who;
  try {
    const r = await fetch('/v1/whoami', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store', credentials: 'omit' });
    const body = await r.json().catch(() => null);
    if (r.status === 401) {
      signOut(`Sign-in failed: the server refused this token (${body && body.error ? body.error.message : '401'}).`);
      return;
    }
    if (!r.ok) throw new ApiError(r.status, body);
    who = body;
  } catch (e) {
    signOut(`Sign-in failed: ${e.message}`);
    return;
  }
  sessionStorage.setItem('ignis.token', token);
  S.role = who.role;
  S.name = who.name;
  $('whoami').textContent = `${who.name} (${who.role})`;
  $('nav').hidden = false;
  $('nav-usage').hidden = !may('usage');
  $('signout').hidden = false;
  $('signin-error').textContent = '';
  route();
}

/* ---- pages ---- */

function route() {
  if (!S.role) return;
  leavePage();
  const h = location.hash || '#/';
  if (h.startsWith('#/fn/')) return pageFunction(decodeURIComponent(h.slice(5)));
  if (h === '#/usage' && may('usage')) return pageUsage();
  return pageOverview();
}

function todayStart() {
  const d = new Date();
  return `${d.toISOString().slice(0, 10)}T00:00:00Z`;
}

function pageOverview() {
  show('overview');
  const tbody = $('functions').querySelector('tbody');
  $('functions').hidden = !may('functions');
  $('invoke-any').hidden = may('functions') || !may('invoke');
  $('overview-note').textContent = may('functions') ? '' :
    `The ${S.role} role may invoke functions and read its own invocations, not list functions, usage or logs.`;
  clear($('totals'));
  clear($('host'));
  $('host-title').hidden = !may('doctor');
  if (!may('functions')) {
    invokeBox($('invoke-any-box'), () => $('invoke-any-name').value.trim(), null);
    return;
  }
  let rows = new Map();
  const drawSummary = (sum) => {
    for (const f of sum.functions) {
      const row = rows.get(f.name);
      if (!row) continue;
      chart(row.inv, f.t, [{ name: 'invocations/s', values: f.invocations }], { window: WINDOW_S, spark: true });
      chart(row.p99, f.t, [{ name: 'p99 ms', values: f.p99_ms, color: 4 }], { window: WINDOW_S, spark: true });
      chart(row.cold, f.t, [{ name: 'cold starts/s', values: f.cold_starts, color: 2 }], { window: WINDOW_S, spark: true });
      chart(row.cont, f.t, [{ name: 'containers', values: f.containers, color: 1 }], { window: WINDOW_S, spark: true });
    }
  };
  every(5000, async () => {
    const [list, sum] = await Promise.all([apiJSON('/v1/functions'), apiJSON('/v1/series?step=10')]);
    const names = list.functions.map((f) => f.name).sort();
    const changed = names.join('\n') !== [...rows.keys()].join('\n');
    if (changed) {
      clear(tbody);
      rows = new Map();
      for (const name of names) {
        const f = list.functions.find((x) => x.name === name);
        const r = {
          inv: el('td', { class: 'spark' }), p99: el('td', { class: 'spark' }),
          cold: el('td', { class: 'spark' }), cont: el('td', { class: 'spark' }),
          state: el('td', { text: f.state }), version: el('td', { class: 'num', text: String(f.version) }),
        };
        rows.set(name, r);
        tbody.append(el('tr', { 'data-function': name },
          el('td', {}, el('a', { href: `#/fn/${encodeURIComponent(name)}`, text: name })),
          el('td', { text: f.service || '—' }), el('td', { text: f.runtime }), r.version, r.state,
          r.inv, r.p99, r.cold, r.cont));
      }
      if (!names.length) tbody.append(el('tr', {}, el('td', { colspan: 9, text: 'No functions yet: ignis push DIR' })));
    }
    for (const f of list.functions) {
      const r = rows.get(f.name);
      if (r) { r.state.textContent = f.state; r.version.textContent = String(f.version); }
    }
    drawSummary(sum);
  });
  if (may('usage')) {
    every(60000, async () => {
      const u = await apiJSON(`/v1/usage?since=${encodeURIComponent(todayStart())}`);
      clear($('totals')).append(
        card('Invocations today', u.totals.invocations),
        card('Billed ms today', u.totals.billed_ms),
        card('GB-s today', Number(u.totals.gb_s).toFixed(4)));
    });
  }
  if (may('doctor')) {
    apiJSON('/v1/doctor').then((doc) => {
      const host = clear($('host'));
      const checks = Array.isArray(doc.checks) ? doc.checks : [];
      const deg = checks.filter((c) => c.status && c.status !== 'ok');
      host.append(el('div', { class: 'cards' },
        card('Status', doc.status || '—'),
        ...checks.filter((c) => /cgroup|kernel/i.test(c.check || '')).map((c) => card(c.check, c.detail || c.status))));
      if (deg.length) {
        host.append(el('p', { text: 'Degraded or failing:' }));
        host.append(el('ul', {}, ...deg.map((c) => el('li', { text: `${c.check}: ${c.status}${c.detail ? ' — ' + c.detail : ''}` }))));
      } else {
        host.append(el('p', { class: 'note', text: 'Every check passes.' }));
      }
    }).catch((e) => $('host').append(el('p', { class: 'error', text: e.message })));
  }
}

/* The invoke box: a payload, the result's status, headers and body (as text). */
function invokeBox(node, nameOf, after) {
  clear(node);
  const payload = el('textarea', { id: `${node.id}-payload`, spellcheck: 'false' });
  payload.value = '{"name": "console"}';
  const out = el('div', { class: 'invoke-result' });
  const button = el('button', { type: 'button', id: `${node.id}-go`, text: 'Invoke' });
  button.addEventListener('click', async () => {
    const name = nameOf();
    if (!name) return;
    button.disabled = true;
    clear(out).append(el('p', { class: 'note', text: 'Invoking…' }));
    try {
      const r = await api(`/v1/functions/${encodeURIComponent(name)}/invoke`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: payload.value,
      });
      const text = await r.text();
      const heads = [];
      r.headers.forEach((v, k) => heads.push(`${k}: ${v}`));
      clear(out).append(
        el('p', { class: r.ok ? 'ok' : 'bad', 'data-status': String(r.status), text: `${r.status} ${r.statusText}` }),
        el('pre', { class: 'headers', text: heads.sort().join('\n') }),
        el('pre', { class: 'body', text }));
      if (after) after(r.headers.get('ignis-invocation-id'));
    } catch (e) {
      clear(out).append(el('p', { class: 'error', text: e.message }));
    }
    button.disabled = false;
  });
  node.append(payload, button, out);
}

/* REPORT RequestId: ID\tDuration: 2.29 ms\tBilled Duration: 3 ms\tCPU: 1.52 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB[\tInit Duration: 120.50 ms]\tVersion: 3
   (fields by name, so ones added at the end do not disturb this) */
function parseReport(rec) {
  if (rec.stream !== 'platform' || !rec.text.startsWith('REPORT ')) return null;
  const f = {};
  for (const part of rec.text.slice(7).split('\t')) {
    const i = part.indexOf(': ');
    if (i > 0) f[part.slice(0, i)] = part.slice(i + 2);
  }
  return {
    id: f.RequestId || rec.invocation, time: rec.time,
    duration: parseFloat(f.Duration), billed: parseFloat(f['Billed Duration']),
    cpu: parseFloat(f.CPU), peak: parseFloat(f['Max Memory Used']), init: f['Init Duration'] || null,
    line: rec.text,
  };
}

async function readLines(path, signal, onRecord) {
  const r = await api(path, { signal });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line) try { onRecord(JSON.parse(line)); } catch (e) { /* a partial record */ }
    }
  }
}

function logLine(rec) {
  return `${(rec.time || '').slice(11, 23)} ${rec.invocation ? rec.invocation.slice(0, 8) : '--------'} ${rec.stream} ${rec.text.replace(/\t/g, '  ')}\n`;
}

function pageFunction(name) {
  show('function');
  $('fn-title').textContent = name;
  $('fn-error').textContent = '';
  clear($('fn-facts'));
  $('fn-decision').textContent = '';
  $('fn-manifest').textContent = '';
  for (const id of ['queue', 'containers', 'rate', 'latency', 'cold', 'cost']) clear($(`chart-${id}`));
  $('fn-invoke').hidden = !may('invoke');
  $('fn-recent-wrap').hidden = !may('logs');
  $('fn-inv-logs').hidden = true;
  const recentBody = $('fn-recent').querySelector('tbody');
  clear(recentBody);
  clear($('fn-log'));
  if (!may('functions')) {
    $('fn-error').textContent = `The ${S.role} role may invoke this function but not read its state.`;
  }
  let refreshRecent = () => {};
  if (may('invoke')) invokeBox($('fn-invoke-box'), () => name, () => setTimeout(() => refreshRecent(), 300));
  if (!may('functions')) return;

  /* Live charts: the whole window once, then each second what is new. */
  const d = { t: [] };
  const draw = () => {
    const t = d.t, w = { window: WINDOW_S };
    chart($('chart-queue'), t, [{ name: 'queued', values: d.queued }], w);
    chart($('chart-containers'), t, [
      { name: 'ready', values: d.ready }, { name: 'busy', values: d.busy },
      { name: 'spawning', values: d.spawning }, { name: 'desired', values: d.desired, color: 3, dash: true }], w);
    chart($('chart-rate'), t, [{ name: 'invocations/s', values: d.invocations }, { name: 'errors/s', values: d.errors, color: 4 }], w);
    chart($('chart-latency'), t, [{ name: 'p50', values: d.p50_ms }, { name: 'p99', values: d.p99_ms, color: 4 }], w);
    chart($('chart-cold'), t, [{ name: 'cold starts/s', values: d.cold_starts, color: 2 },
      { name: 'setup ms', values: d.cold_setup_ms, color: 0 }, { name: 'runtime init ms', values: d.cold_init_ms, color: 3 }], w);
    chart($('chart-cost'), t, [{ name: 'CPU ms/s', values: d.cpu_ms }, { name: 'billed ms/s', values: d.billed_ms, color: 2 }], w);
  };
  let since = 0;
  every(1000, async () => {
    const s = await apiJSON(`/v1/functions/${encodeURIComponent(name)}/series?since=${since}`);
    for (const [k, v] of Object.entries(s)) {
      if (!Array.isArray(v)) continue;
      d[k] = (d[k] || []).concat(v);
      if (d[k].length > WINDOW_S) d[k] = d[k].slice(d[k].length - WINDOW_S);
    }
    if (s.t.length) since = s.t[s.t.length - 1];
    draw();
  });

  let manifestShown = false;
  every(3000, async () => {
    let f;
    try {
      f = await apiJSON(`/v1/functions/${encodeURIComponent(name)}`);
    } catch (e) {
      $('fn-error').textContent = e.status === 404 ? `No function named ${name}.` : e.message;
      return;
    }
    $('fn-error').textContent = '';
    const l = f.live || {};
    clear($('fn-facts')).append(card('Runtime', f.runtime), card('Version', f.version), card('State', f.state),
      card('Service', f.service || '—'), card('Queue', l.queue_depth ?? '—'),
      card('Ready / busy / spawning', `${l.ready ?? 0} / ${l.busy ?? 0} / ${l.spawning ?? 0}`),
      card('Desired', l.desired ?? '—'), card('Billed ms', l.billed_ms ?? 0));
    const ld = l.last_decision || {};
    $('fn-decision').textContent = ld.age_s >= 0
      ? `Scaler's last decision ${Math.round(ld.age_s)} s ago: ${ld.reason}, spawned ${ld.spawned}, reaped ${ld.reaped}; held by: ${ld.held}${l.panic ? ' (panic mode)' : ''}.`
      : 'The scaler has made no decision yet.';
    if (!manifestShown) {
      $('fn-manifest').textContent = JSON.stringify(f.manifest, null, 2);
      manifestShown = true;
    }
  });

  if (!may('logs')) return;
  const statusOf = new Map();
  const showInvocationLogs = async (id) => {
    $('fn-inv-logs').hidden = false;
    $('fn-inv-logs-title').textContent = `Logs of ${id}`;
    const pre = clear($('fn-inv-logs-text'));
    const ac = new AbortController();
    S.aborts.push(ac);
    await readLines(`/v1/functions/${encodeURIComponent(name)}/logs?invocation=${encodeURIComponent(id)}`, ac.signal,
      (rec) => pre.append(document.createTextNode(logLine(rec))));
  };
  refreshRecent = async () => {
    const reports = [];
    const ac = new AbortController();
    S.aborts.push(ac);
    await readLines(`/v1/functions/${encodeURIComponent(name)}/logs?tail=400`, ac.signal, (rec) => {
      const r = parseReport(rec);
      if (r) reports.push(r);
    });
    const recent = reports.slice(-10).reverse();
    await Promise.all(recent.filter((r) => !statusOf.has(r.id)).map(async (r) => {
      try {
        const inv = await apiJSON(`/v1/invocations/${encodeURIComponent(r.id)}`);
        if (inv.status !== 'queued' && inv.status !== 'running') statusOf.set(r.id, inv.status);
        else return inv.status;
      } catch (e) {
        statusOf.set(r.id, e.status === 404 ? 'expired' : '?');
      }
      return null;
    }));
    clear(recentBody);
    for (const r of recent) {
      const open = el('button', { type: 'button', class: 'open-logs', text: 'logs' });
      open.addEventListener('click', () => showInvocationLogs(r.id).catch((e) => { $('fn-inv-logs-text').textContent = e.message; }));
      recentBody.append(el('tr', { 'data-invocation': r.id, title: r.line },
        el('td', {}, el('code', { text: r.id })), el('td', { text: statusOf.get(r.id) || '…' }),
        el('td', { class: 'num', text: fmt(r.duration) }), el('td', { class: 'num billed', text: String(r.billed) }),
        el('td', { class: 'num', text: fmt(r.cpu) }), el('td', { class: 'num', text: Number.isFinite(r.peak) ? String(r.peak) : '—' }),
        el('td', {}, open)));
    }
    if (!recent.length) recentBody.append(el('tr', {}, el('td', { colspan: 7, text: 'None in the log yet.' })));
  };
  every(3000, refreshRecent);

  /* The follow-mode tail: one streamed request for as long as the page is open. */
  const logPre = $('fn-log');
  const follow = () => {
    const ac = new AbortController();
    S.aborts.push(ac);
    readLines(`/v1/functions/${encodeURIComponent(name)}/logs?tail=50&follow=true`, ac.signal, (rec) => {
      logPre.append(document.createTextNode(logLine(rec)));
      while (logPre.childNodes.length > 500) logPre.removeChild(logPre.firstChild);
      if ($('fn-follow').checked) logPre.scrollTop = logPre.scrollHeight;
    }).catch((e) => { if (e.name !== 'AbortError' && e.status !== 404) logPre.append(document.createTextNode(`(${e.message})\n`)); });
  };
  follow();
}

let usageRows = [];

function pageUsage() {
  show('usage');
  const load = async () => {
    const range = $('usage-range').value;
    const [since, by] = range === 'day' ? ['24h', 'hour'] : range === 'week' ? ['7d', 'day'] : ['30d', 'day'];
    $('usage-error').textContent = '';
    let u;
    try {
      u = await apiJSON(`/v1/usage?since=${since}&group_by=${by}`);
    } catch (e) {
      $('usage-error').textContent = e.message;
      return;
    }
    const totals = new Map();
    usageRows = [];
    for (const f of u.functions) {
      for (const b of f.buckets || []) {
        totals.set(b.start, (totals.get(b.start) || 0) + b.billed_ms);
        usageRows.push([f.function, b.start, b.invocations, b.errors, b.billed_ms, b.cpu_ms, b.gb_s]);
      }
    }
    const starts = [...totals.keys()].sort();
    chart($('chart-usage'), starts.map((s) => Date.parse(s) / 1000), [{ name: 'billed ms', values: starts.map((s) => totals.get(s)) }], { bars: true });
    const tbody = clear($('usage-table').querySelector('tbody'));
    for (const f of u.functions) {
      tbody.append(el('tr', {}, el('td', { text: f.function }), el('td', { class: 'num', text: String(f.invocations) }),
        el('td', { class: 'num', text: String(f.errors) }), el('td', { class: 'num', text: String(f.billed_ms) }),
        el('td', { class: 'num', text: fmt(f.cpu_ms) }), el('td', { class: 'num', text: Number(f.gb_s).toFixed(4) })));
    }
    if (!u.functions.length) tbody.append(el('tr', {}, el('td', { colspan: 6, text: 'No invocations in this range.' })));
  };
  $('usage-range').onchange = load;
  every(60000, load);
}

function csvField(v) {
  const s = String(v ?? '');
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function downloadCSV() {
  const lines = [['function', 'bucket_start', 'invocations', 'errors', 'billed_ms', 'cpu_ms', 'gb_s']]
    .concat(usageRows).map((r) => r.map(csvField).join(','));
  const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }));
  const a = el('a', { href: url, download: `ignis-usage-${$('usage-range').value}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    $('token').value = '';
    signIn(t);
  });
  $('signout').addEventListener('click', () => signOut(''));
  $('usage-csv').addEventListener('click', downloadCSV);
  window.addEventListener('hashchange', route);
  if (S.token) signIn(S.token);
  else show('signin');
});
