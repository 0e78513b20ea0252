// app.js: the meshback dashboard. Plain ES module, no build step, no framework; every figure comes
// from the server's API (docs/api.md, docs/ui.md) on the page's own origin.
import { timeChart } from './chart.js';

const TOKEN_KEY = 'meshback-token';
const $ = (id) => document.getElementById(id);

/** an element with attributes and children (strings become text: nothing is parsed as HTML) */
function h(name, attrs = {}, ...children) {
  const e = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`;
}
function fmtAge(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
const short = (id) => id.slice(0, 8);
const when = (iso) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

function setStatus(text, cls = '') {
  $('status').textContent = text;
  $('status').className = cls;
}

// --- the API, with the token asked for on 401 -------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function askToken() {
  const d = $('token-dialog');
  return new Promise((resolve) => {
    $('token-input').value = '';
    d.addEventListener('close', () => resolve($('token-input').value.trim()), { once: true });
    d.showModal();
  });
}

async function api(path, init = {}) {
  for (let attempt = 0; attempt < 4; attempt++) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { ...(init.headers ?? {}), ...(token ? { Authorization: `Bearer ${token}` } : {}) };
    const res = await fetch(path, { ...init, headers });
    if (res.status === 401) {
      const t = await askToken();
      if (t === '') throw new ApiError(401, 'UNAUTHORIZED', 'no token given');
      sessionStorage.setItem(TOKEN_KEY, t);
      continue;
    }
    const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
    if (!res.ok) throw new ApiError(res.status, body?.error?.code ?? 'HTTP', body?.error?.message ?? `${res.status} ${res.statusText}`);
    return body;
  }
  throw new ApiError(401, 'UNAUTHORIZED', 'the token was refused');
}

// --- tabs: arrow keys move between them, Enter/Space (the buttons' own) activates ------------

const tabs = () => [...document.querySelectorAll('[role=tab]')];
function select(tab, focus = false) {
  for (const t of tabs()) {
    const on = t === tab;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
  }
  if (focus) tab.focus();
  history.replaceState(null, '', `#${tab.getAttribute('aria-controls')}`);
}
function setupTabs() {
  for (const t of tabs()) {
    t.addEventListener('click', () => select(t));
    t.addEventListener('keydown', (e) => {
      const all = tabs();
      const i = all.indexOf(t);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: all.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      // focus moves; Enter or Space (the button's click) shows the page (manual activation)
      const to = all[(next + all.length) % all.length];
      for (const x of all) x.tabIndex = x === to ? 0 : -1;
      to.focus();
    });
  }
  const start = tabs().find((t) => `#${t.getAttribute('aria-controls')}` === location.hash);
  if (start) select(start);
}

// --- data ---------------------------------------------------------------------------------

const state = { mode: 'server', policies: [], snapshots: [] };

/** the key a snapshot is grouped by: its policy (server), or its host, paths and tags (ui --repo) */
function groupOf(s) {
  if (state.mode === 'server') return s.policy;
  const tags = s.snapshot.tags.filter((t) => !t.startsWith('policy=')).join(',');
  return `${s.snapshot.host}:${s.snapshot.paths.join(',')}${tags ? ` [${tags}]` : ''}`;
}
/** the groups in order: the policy file's (server), else by newest snapshot */
const groupsOf = () => (state.mode === 'server' ? state.policies.map((p) => p.name).filter((n) => state.snapshots.some((s) => s.policy === n)) : [...new Set(state.snapshots.map(groupOf))]);
const volumeOf = (s) => s.snapshot.paths.join(', ');

function rpoColour(ageSeconds, rpoSeconds) {
  if (ageSeconds === undefined) return 'red';
  if (rpoSeconds === undefined) return 'none';
  if (ageSeconds <= 0.75 * rpoSeconds) return 'green';
  if (ageSeconds <= rpoSeconds) return 'amber';
  return 'red';
}

function renderOverview() {
  const body = $('overview-body');
  const now = Date.now();
  const rows = [];
  const groups = state.mode === 'server' ? state.policies.map((p) => ({ name: p.name, rpo: p.rpoSeconds, policy: p })) : [...new Set(state.snapshots.map(groupOf))].map((g) => ({ name: g }));
  for (const g of groups) {
    const snaps = state.snapshots.filter((s) => groupOf(s) === g.name);
    const volumes = [...new Set(snaps.map(volumeOf))];
    if (volumes.length === 0) volumes.push(undefined);
    for (const vol of volumes) {
      const newest = snaps.find((s) => vol === undefined || volumeOf(s) === vol);
      const age = newest ? (now - Date.parse(newest.snapshot.endTime)) / 1000 : undefined;
      const colour = rpoColour(age, g.rpo);
      const label = colour === 'none' ? 'no target' : colour;
      rows.push(
        h('tr', { 'data-group': g.name, 'data-rpo': colour },
          h('th', { scope: 'row' }, g.name),
          h('td', {}, vol ?? '-'),
          h('td', {}, newest ? h('span', {}, `${when(newest.snapshot.time)} `, h('code', {}, short(newest.id))) : 'no backup yet'),
          h('td', { class: 'num' }, age !== undefined ? fmtAge(age) : '-'),
          h('td', { class: 'num' }, g.rpo !== undefined ? fmtAge(g.rpo) : '-'),
          h('td', {}, h('span', { class: `badge rpo-${colour}`, 'aria-label': `RPO ${label}` }, label)),
          state.mode === 'server' ? h('td', {}, g.policy?.running ? 'running' : g.policy?.lastRun ? `${g.policy.lastRun.status} ${when(g.policy.lastRun.finishedAt ?? g.policy.lastRun.startedAt ?? '')}` : '-') : undefined,
        ),
      );
    }
  }
  body.replaceChildren(
    rows.length === 0
      ? h('p', {}, 'No policies and no snapshots yet.')
      : h('table', { 'aria-label': 'Newest backup per policy and volume' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, state.mode === 'server' ? 'Policy' : 'Group'), h('th', { scope: 'col' }, 'Volume'), h('th', { scope: 'col' }, 'Newest backup'), h('th', { scope: 'col', class: 'num' }, 'Age'), h('th', { scope: 'col', class: 'num' }, 'RPO target'), h('th', { scope: 'col' }, 'RPO'), state.mode === 'server' ? h('th', { scope: 'col' }, 'Last run') : undefined)),
          h('tbody', {}, rows),
        ),
  );
}

function renderCharts() {
  const body = $('charts-body');
  const groups = groupsOf();
  const parts = [];
  for (const g of groups) {
    const snaps = state.snapshots.filter((s) => groupOf(s) === g).slice().reverse(); // oldest first
    const pts = (f, title, data) => snaps.map((s, i) => ({ t: Date.parse(s.snapshot.time), y: f(s, i), title: title(s, i), data: { snapshot: s.id, ...data(s, i) } }));
    const dur = pts((s) => s.snapshot.summary.duration, (s) => `${when(s.snapshot.time)}: ${s.snapshot.summary.duration.toFixed(2)} s`, (s) => ({ duration: s.snapshot.summary.duration }));
    const added = pts((s) => s.snapshot.summary.bytesAdded, (s) => `${when(s.snapshot.time)}: ${fmtBytes(s.snapshot.summary.bytesAdded)} added (${s.snapshot.summary.bytesAdded} bytes)`, (s) => ({ 'bytes-added': s.snapshot.summary.bytesAdded }));
    // change rate: bytes added per hour since the snapshot before (the first has none)
    const rate = snaps.slice(1).map((s, i) => {
      const hours = Math.max(1 / 3600, (Date.parse(s.snapshot.time) - Date.parse(snaps[i].snapshot.time)) / 3_600_000);
      const r = s.snapshot.summary.bytesAdded / hours;
      return { t: Date.parse(s.snapshot.time), y: r, title: `${when(s.snapshot.time)}: ${fmtBytes(r)}/h`, data: { snapshot: s.id, rate: Math.round(r) } };
    });
    parts.push(
      h('section', { class: 'chart-group', 'data-group': g },
        h('h3', {}, g),
        h('h4', {}, 'Backup duration'),
        timeChart(dur, { kind: 'line', label: `Backup duration of ${g} over time, ${dur.length} snapshots, in seconds`, yLabel: 'seconds', fmt: (v) => (v === 0 ? '0 s' : v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(1)} s`), cls: 'duration' }),
        h('h4', {}, 'Bytes added'),
        timeChart(added, { kind: 'line', label: `Bytes added by each backup of ${g}, ${added.length} snapshots`, yLabel: 'bytes added', fmt: fmtBytes, cls: 'bytes-added' }),
        h('h4', {}, 'Change rate'),
        timeChart(rate, { kind: 'bar', label: `Change rate of ${g}: bytes added per hour between backups`, yLabel: 'per hour', fmt: (v) => `${fmtBytes(v)}/h`, cls: 'change-rate' }),
      ),
    );
  }
  body.replaceChildren(...(parts.length > 0 ? parts : [h('p', {}, 'No snapshots yet.')]));
}

function renderSnapshots() {
  const body = $('snapshots-body');
  const groups = groupsOf();
  const parts = [];
  for (const g of groups) {
    const snaps = state.snapshots.filter((s) => groupOf(s) === g);
    parts.push(
      h('h3', {}, g),
      h('table', { 'aria-label': `Snapshots of ${g}` },
        h('thead', {}, h('tr', {}, ...['Time', 'ID', 'Host', 'Paths', 'Files', 'Size', 'Added', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {},
          snaps.map((s, i) => {
            const older = snaps[i + 1];
            return h('tr', { 'data-snapshot': s.id },
              h('td', {}, when(s.snapshot.time)),
              h('td', {}, h('code', {}, short(s.id))),
              h('td', {}, s.snapshot.host),
              h('td', {}, s.snapshot.paths.join(', ')),
              h('td', { class: 'num' }, s.snapshot.summary.files),
              h('td', { class: 'num' }, fmtBytes(s.snapshot.summary.totalBytes)),
              h('td', { class: 'num' }, fmtBytes(s.snapshot.summary.bytesAdded)),
              h('td', {},
                older ? h('button', { type: 'button', class: 'diff-button', 'aria-label': `Changes from ${short(older.id)} to ${short(s.id)}`, onclick: () => showDiff(s, older) }, 'Diff') : undefined,
                ' ',
                h('button', { type: 'button', class: 'restore-button', 'aria-label': `Restore snapshot ${short(s.id)}`, onclick: () => openRestore(s) }, 'Restore…'),
              ),
            );
          }),
        ),
      ),
    );
  }
  body.replaceChildren(...(parts.length > 0 ? parts : [h('p', {}, 'No snapshots yet.')]));
}

async function showDiff(s, older) {
  const sec = $('diff');
  sec.hidden = false;
  $('diff-title').textContent = `Changes from ${short(older.id)} to ${short(s.id)}`;
  $('diff-counts').textContent = 'loading…';
  $('diff-list').replaceChildren();
  try {
    const d = await api(`/v1/snapshots/${s.id}/diff?against=${older.id}`);
    $('diff-counts').textContent = `${d.added} added, ${d.removed} removed, ${d.modified} modified, ${d.type_changed} changed type, ${d.metadata} metadata only${d.truncated ? ` (the first ${d.changes.length} shown)` : ''}`;
    const names = { '+': 'added', '-': 'removed', M: 'modified', T: 'type changed', U: 'metadata' };
    $('diff-list').replaceChildren(...d.changes.map((c) => h('li', { 'data-change': c.change }, h('abbr', { title: names[c.change] }, c.change), ' ', c.path)));
  } catch (err) {
    $('diff-counts').textContent = `the diff failed: ${err.message}`;
  }
}

// --- restore: a dialog, the target typed twice, then polling the restore's record ---------------

let restoreSnap;
function openRestore(s) {
  restoreSnap = s;
  $('restore-snap').textContent = short(s.id);
  $('restore-error').textContent = '';
  $('restore-form').reset();
  $('restore-dialog').showModal();
  $('restore-target').focus();
}
function setupRestore() {
  $('restore-cancel').addEventListener('click', () => $('restore-dialog').close());
  $('restore-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const target = $('restore-target').value.trim();
    if (target !== $('restore-confirm').value.trim()) {
      $('restore-error').textContent = 'The two target paths differ: type the same directory twice.';
      $('restore-confirm').focus();
      return;
    }
    const include = $('restore-include').value.split('\n').map((x) => x.trim()).filter((x) => x !== '');
    let started;
    try {
      started = await api('/v1/restores', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ snapshot: restoreSnap.id, target, ...(include.length > 0 ? { include } : {}) }) });
    } catch (err) {
      $('restore-error').textContent = err.message;
      return;
    }
    $('restore-dialog').close();
    await followRestore(started.id);
  });
}
async function followRestore(id) {
  const sec = $('restore-status');
  const text = $('restore-text');
  sec.hidden = false;
  sec.dataset.status = 'running';
  const t0 = Date.now();
  // polled every half second, for at most 6 hours
  while (Date.now() - t0 < 6 * 3600_000) {
    let r;
    try {
      r = await api(`/v1/restores/${id}`);
    } catch (err) {
      text.textContent = `restore ${id}: cannot be followed: ${err.message}`;
      return;
    }
    if (r.status === 'running') {
      text.textContent = `Restoring ${short(r.snapshot)} into ${r.target}… (${Math.round((Date.now() - t0) / 1000)} s)`;
      await new Promise((res) => setTimeout(res, 500));
      continue;
    }
    sec.dataset.status = r.status;
    text.className = r.status === 'succeeded' ? 'ok' : 'error';
    text.textContent =
      r.status === 'succeeded'
        ? `Restored and verified: snapshot ${short(r.snapshot)} into ${r.target}: ${r.result.files} files, ${fmtBytes(r.result.bytes)}; ${r.result.filesReread} files re-read from disk and compared, in ${r.result.duration.toFixed(2)} s.`
        : `The restore into ${r.target} FAILED (${r.error?.code}): ${r.error?.message}`;
    return;
  }
}

// --- the other panels ----------------------------------------------------------------------

async function renderDrills() {
  const body = $('drills-body');
  if (state.mode !== 'server') {
    body.replaceChildren(h('p', {}, 'Restore drills are run by meshback server (a policy\'s drill.schedule).'));
    return;
  }
  const drills = await api('/v1/drills?limit=50');
  // the RTO is in each drill's report (GET /v1/runs/ID), read for the newest 20
  const reports = await Promise.all(drills.slice(0, 20).map((d) => (d.status === 'succeeded' || d.status === 'failed' ? api(`/v1/runs/${d.id}`).catch(() => d) : d)));
  body.replaceChildren(
    drills.length === 0
      ? h('p', {}, 'No restore drills yet (a policy\'s drill.schedule runs them).')
      : h('table', { 'aria-label': 'Restore drills' },
          h('thead', {}, h('tr', {}, ...['Policy', 'Started', 'Status', 'Snapshot', 'RTO', 'Files', 'Verified'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {},
            reports.map((d) =>
              h('tr', { 'data-drill': d.id },
                h('td', {}, d.policy),
                h('td', {}, d.startedAt ? when(d.startedAt) : '-'),
                h('td', {}, d.status),
                h('td', {}, d.report?.snapshotId ? h('code', {}, short(d.report.snapshotId)) : '-'),
                h('td', { class: 'num' }, d.report?.rtoSeconds !== undefined ? `${d.report.rtoSeconds.toFixed(2)} s` : '-'),
                h('td', { class: 'num' }, d.report?.restoredFiles ?? '-'),
                h('td', {}, d.report ? (d.report.verified ? 'yes' : 'NO') : '-'),
              ),
            ),
          ),
        ),
  );
}

async function renderHealth() {
  const repos = await api('/v1/repository');
  $('health-body').replaceChildren(
    ...repos.map((r) =>
      h('section', { 'data-repository': r.location },
        h('h3', {}, r.location),
        r.ok
          ? h('dl', {},
              h('dt', {}, 'Packs'), h('dd', {}, `${r.packs.files} (${fmtBytes(r.packs.bytes)})`),
              h('dt', {}, 'Index files'), h('dd', {}, `${r.index.files} (${fmtBytes(r.index.bytes)})`),
              h('dt', {}, 'Parity'), h('dd', {}, r.parity.configured ? `${r.parity.files} parity files for ${r.packs.files} packs${r.parity.files < r.packs.files ? ' (some packs have none: run meshback repair packs)' : ''}` : 'none (the repository was made without --parity)'),
              h('dt', {}, 'Snapshots'), h('dd', {}, r.snapshots),
              h('dt', {}, 'Locks'), h('dd', {}, r.locks),
              h('dt', {}, 'Last check'), h('dd', { class: 'last-check', 'data-status': r.lastCheck?.status ?? 'none', 'data-ok': r.lastCheck?.ok === undefined ? 'unknown' : String(r.lastCheck.ok) }, checkText(r.lastCheck)),
              r.lastCheck?.damagedPacks?.length > 0 ? [h('dt', {}, 'Damaged packs'), h('dd', { class: 'damaged' }, `${r.lastCheck.damagedPacks.join(', ')}${r.lastCheck.repairablePacks?.length > 0 ? ` (${r.lastCheck.repairablePacks.length} repairable from parity: meshback repair packs)` : ''}`)] : undefined,
            )
          : h('p', { class: 'error' }, `cannot be read: ${r.error}`),
        r.ok
          ? h('p', {},
              h('label', {}, h('input', { type: 'checkbox', class: 'read-data' }), ' read all data (every pack; slow)'),
              ' ',
              h('button', { type: 'button', class: 'run-check', disabled: r.lastCheck?.status === 'running', onclick: (e) => startCheck(e, r.location) }, 'Run check'),
            )
          : undefined,
      ),
    ),
  );
}

function checkText(c) {
  if (!c) return 'none run by this server yet: use Run check (or meshback check --read-data)';
  if (c.status === 'running') return `running since ${when(c.at)}${c.readData ? ' (reading all data)' : ''}`;
  if (c.status === 'failed') return `${when(c.at)}: could not run: ${c.error}`;
  return `${when(c.at)}${c.readData ? ', all data read' : ', structure only'}: ${c.ok ? 'no errors' : `${c.errors} error(s)${c.findings?.length ? `, first: ${c.findings[0]}` : ''}`}`;
}

/** starts a check of the repository, then refreshes the Health page until it has ended */
async function startCheck(e, location) {
  const section = e.target.closest('section');
  const readData = section.querySelector('input.read-data').checked;
  e.target.disabled = true;
  try {
    await api('/v1/check', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ location, readData }) });
  } catch (err) {
    setStatus(`check: ${err.message}`, 'error');
  }
  for (let i = 0; i < 600; i++) {
    await renderHealth();
    const dd = document.querySelector(`section[data-repository="${CSS.escape(location)}"] .last-check`);
    if (dd?.dataset.status !== 'running') return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function renderReports() {
  const body = $('reports-body');
  const list = await api('/v1/reports');
  body.replaceChildren(
    list.length === 0
      ? h('p', {}, 'No reports: start the server with --reports DIR (e.g. bench-results) to list the fault benchmark\'s reports here.')
      : h('ul', {}, list.map((r) => h('li', {}, h('a', { href: `/v1/reports/${encodeURIComponent(r.name)}`, onclick: (e) => openReport(e, r.name) }, r.name), ` (${fmtBytes(r.bytes)}, ${when(r.modified)})`))),
  );
}
/** with a token the link cannot carry it: the report is fetched with it and shown from a blob */
async function openReport(e, name) {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  e.preventDefault();
  const res = await fetch(`/v1/reports/${encodeURIComponent(name)}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
  window.open(URL.createObjectURL(await res.blob()), '_blank', 'noopener');
}

async function renderAdvisor() {
  const body = $('advisor-body');
  let report;
  try {
    report = await api('/v1/advice');
  } catch (err) {
    body.replaceChildren(err.status === 404 ? h('p', { id: 'advisor-missing' }, 'advisor not available on this server') : h('p', { class: 'error' }, `advice: ${err.message}`));
    return;
  }
  // one section per policy: the recommended schedule, its predicted window and growth, the open anomaly alerts and the retention hold (docs/advisor.md)
  body.replaceChildren(
    ...report.policies.map((p) => {
      const a = p.advice;
      const rec = a?.candidates.find((c) => c.schedule === a.recommended);
      const cur = a?.candidates.find((c) => c.current);
      const open = p.anomalies?.open ?? [];
      return h(
        'section',
        { class: 'advice', 'data-policy': p.policy, 'data-open-anomalies': open.length },
        h('h3', {}, p.policy),
        p.error !== undefined ? h('p', { class: 'error' }, `${p.error.code}: ${p.error.message}`) : undefined,
        a !== undefined
          ? h(
              'dl',
              {},
              h('dt', {}, 'current schedule'),
              h('dd', {}, a.currentSchedule ?? 'none'),
              h('dt', {}, 'recommended'),
              h('dd', { class: 'recommended' }, a.recommended ?? 'no recommendation'),
              h('dt', {}, 'why'),
              h('dd', { class: 'reason' }, a.reason),
              rec !== undefined ? [h('dt', {}, 'predicted window'), h('dd', {}, `${Math.round(rec.windowSeconds)} s at the busiest hour`), h('dt', {}, 'storage growth'), h('dd', {}, `${fmtBytes(rec.storedBytesPerDay)} a day, ${fmtBytes(rec.storedBytesPerMonth)} a month`)] : undefined,
              cur !== undefined && cur.rpoMet !== undefined ? [h('dt', {}, 'RPO with the current schedule'), h('dd', {}, cur.rpoMet ? 'met' : 'NOT met')] : undefined,
            )
          : undefined,
        h('h4', {}, open.length === 0 ? 'no open anomaly' : `${open.length} open anomal${open.length === 1 ? 'y' : 'ies'}${p.anomalies?.holdBefore !== undefined ? `: retention held for snapshots up to ${p.anomalies.holdBefore}` : ''}`),
        open.length > 0 ? h('ul', { class: 'anomalies' }, open.map((x) => h('li', { class: `anomaly ${x.severity}`, 'data-kind': x.kind }, `${x.time ?? ''} ${x.kind} (${x.severity}), snapshot ${x.snapshot.slice(0, 8)}: ${x.message}`))) : undefined,
      );
    }),
  );
}

async function load() {
  setStatus('loading…');
  try {
    const info = await api('/v1/ui');
    state.mode = info.mode;
    $('mode').textContent = info.mode === 'repo' ? `repository view · ${info.version}` : `server · ${info.version}`;
    if (info.mode === 'server') state.policies = await api('/v1/policies');
    state.snapshots = await api('/v1/snapshots');
    renderOverview();
    renderCharts();
    renderSnapshots();
    const others = await Promise.allSettled([renderDrills(), renderHealth(), renderReports(), renderAdvisor()]);
    const failed = others.filter((o) => o.status === 'rejected');
    setStatus(failed.length > 0 ? `loaded, but: ${failed.map((f) => f.reason.message).join('; ')}` : `loaded ${new Date().toLocaleTimeString()}`, failed.length > 0 ? 'error' : '');
    document.body.dataset.loaded = 'true';
  } catch (err) {
    setStatus(`the dashboard cannot load: ${err.message}`, 'error');
    document.body.dataset.loaded = 'error';
  }
}

setupTabs();
setupRestore();
void load();
