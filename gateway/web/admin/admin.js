// The admin page: polls /admin/api/stats every second and keeps the last 10 minutes of samples
// in a fixed ring (600 entries), from which it draws the rates as SVG lines; the channel,
// presence, history, connection lookup, disconnect and publish forms call the other /admin/api/
// routes, which are the backend API's routes answered with the admin password. Text from the
// network is only ever set with textContent (the page's Content-Security-Policy also forbids
// markup from strings).

const API = '/admin/api';
const HEADERS = { 'X-Gateway-Admin': '1' };
/** What the charts span. */
const WINDOW_MS = 600_000;
/** Samples kept at most: one a second for 10 minutes. */
const RING = 600;
const POLL_MS = 1000;
/** Channels listed as the busiest. */
const TOP_CHANNELS = 20;
/** How often the busiest channels are listed again. */
const CHANNELS_MS = 5000;

const $ = (id) => document.getElementById(id);

/** A GET or POST to the admin API; resolves to {status, body} (body parsed when JSON). */
async function call(path, body) {
  const init = { headers: { ...HEADERS }, cache: 'no-store' };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`${API}${path}`, init);
  const text = await r.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { parsed = text; }
  return { status: r.status, body: parsed };
}

function errorText(res) {
  const e = res.body && res.body.error;
  return e ? `${res.status} ${e.code}: ${e.message}` : `${res.status}`;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = String(text);
  row.append(td);
  return td;
}

/** A cell holding a button named `label` (for screen readers: `label target`). */
function buttonCell(row, label, target, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', `${label} ${target}`);
  b.addEventListener('click', onClick);
  cell(row, '').append(b);
}

function fill(tbody, rows, build) {
  const trs = rows.map((r) => {
    const tr = document.createElement('tr');
    build(tr, r);
    return tr;
  });
  tbody.replaceChildren(...trs);
}

// ---- the live view --------------------------------------------------------------------------

/** Fixed-size ring of samples: {t, connections, rates...}. */
const ring = [];
let previous = null;

/** Counters whose rate per second is charted, by tile key. */
const RATES = {
  connects: (s) => s.accepted,
  disconnects: (s) => s.closed,
  messages_in: (s) => s.messages_in,
  messages_out: (s) => s.messages_out,
  publishes: (s) => s.publishes,
  deliveries: (s) => s.deliveries,
};

function format(v) {
  if (!Number.isFinite(v)) return '-';
  if (v >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString('en');
  return v.toFixed(1);
}

function sample(stats, t) {
  const s = {
    t,
    connections: stats.connections,
    queue_depth: Math.max(0, ...stats.shards.map((sh) => sh.queue_depth)),
  };
  const dt = previous ? (t - previous.t) / 1000 : 0;
  for (const [key, read] of Object.entries(RATES)) {
    s[key] = previous && dt > 0 ? Math.max(0, read(stats) - read(previous.stats)) / dt : 0;
  }
  s.closeRates = {};
  for (const [code, n] of Object.entries(stats.closes)) {
    const before = previous ? previous.stats.closes[code] ?? 0 : n;
    s.closeRates[code] = dt > 0 ? Math.max(0, n - before) / dt : 0;
  }
  previous = { t, stats };
  ring.push(s);
  while (ring.length > RING || ring[0].t < t - WINDOW_MS) ring.shift();
  return s;
}

/** Chart `key` over the window: x is seconds (600 = now), y the value scaled to the peak. */
function draw(tile, key) {
  const line = tile.querySelector('polyline');
  const now = ring[ring.length - 1].t;
  const max = Math.max(1, ...ring.map((s) => s[key]));
  const points = ring.map((s) => {
    const x = (WINDOW_MS - (now - s.t)) / 1000;
    return `${x.toFixed(1)},${(60 - (s[key] / max) * 56 - 2).toFixed(1)}`;
  });
  line.setAttribute('points', points.join(' '));
  tile.querySelector('.spark').setAttribute('data-max', String(max));
}

function render(stats, s) {
  for (const tile of document.querySelectorAll('#tiles .tile')) {
    const key = tile.dataset.key;
    const out = tile.querySelector('.value');
    out.textContent = format(s[key]);
    tile.dataset.value = String(s[key]);
    draw(tile, key);
  }
  fill($('nodes').tBodies[0], stats.nodes, (tr, n) => {
    cell(tr, n.self ? `${n.node} (this node)` : n.node);
    // Another node's totals are read from that node; this one knows only its own.
    cell(tr, n.connections ?? '-');
    cell(tr, n.shards ?? '-');
    cell(tr, n.broker);
    tr.dataset.node = n.node;
  });
  fill($('shards').tBodies[0], stats.shards, (tr, sh) => {
    cell(tr, sh.shard);
    cell(tr, sh.connections);
    cell(tr, sh.queue_depth);
  });
  const codes = Object.entries(stats.closes).filter(([, n]) => n > 0);
  fill($('closes').tBodies[0], codes, (tr, [code, n]) => {
    tr.dataset.code = code;
    cell(tr, code);
    cell(tr, n);
    cell(tr, format(s.closeRates[code]));
  });
  $('broker').textContent = `${stats.broker.kind}: ${stats.broker.state}`;
}

function setLive(state, text) {
  const el = $('live-state');
  el.dataset.state = state;
  el.textContent = text;
}

async function poll() {
  try {
    const res = await call('/stats');
    if (res.status !== 200) {
      setLive('error', `stats: ${errorText(res)}`);
    } else {
      const now = Date.now();
      const s = sample(res.body, now);
      render(res.body, s);
      setLive('live', `live, updated ${new Date(now).toLocaleTimeString('en-GB')}`);
    }
  } catch (e) {
    setLive('error', `stats: ${e.message}`);
  }
  setTimeout(poll, POLL_MS);
}

// ---- channels -------------------------------------------------------------------------------

async function refreshChannels() {
  const res = await call('/channels').catch((e) => ({ status: 0, body: { error: { code: 'network', message: e.message } } }));
  if (res.status !== 200) {
    showError('channel-error', `channels: ${errorText(res)}`);
    return;
  }
  const top = res.body.channels
    .sort((a, b) => b.subscribers - a.subscribers || a.channel.localeCompare(b.channel))
    .slice(0, TOP_CHANNELS);
  fill($('channels').tBodies[0], top, (tr, c) => {
    tr.dataset.channel = c.channel;
    cell(tr, c.channel);
    cell(tr, c.subscribers);
    buttonCell(tr, 'Show', c.channel, () => showChannel(c.channel));
  });
}

function showError(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

async function showChannel(name) {
  $('channel-name').value = name;
  showError('channel-error', '');
  const q = `channel=${encodeURIComponent(name)}`;
  const [presence, history] = await Promise.all([call(`/presence?${q}`), call(`/history?${q}&limit=50`)]);
  $('presence-name').textContent = name;
  if (presence.status !== 200) {
    showError('channel-error', `presence: ${errorText(presence)}`);
    fill($('presence').tBodies[0], [], () => {});
  } else {
    fill($('presence').tBodies[0], presence.body.connections, (tr, c) => {
      tr.dataset.conn = c.conn;
      cell(tr, c.conn);
      cell(tr, c.user ?? '(anonymous)');
      buttonCell(tr, 'Disconnect', c.conn, () => pickForDisconnect(c.conn));
    });
  }
  const list = $('history');
  if (history.status === 200) {
    const pubs = history.body.publications ?? [];
    $('history-state').textContent = `${pubs.length} publication(s)`;
    list.replaceChildren(...pubs.map((p) => {
      const li = document.createElement('li');
      li.textContent = `${p.offset ?? ''} ${JSON.stringify(p.data)}`;
      return li;
    }));
  } else {
    $('history-state').textContent = history.status === 404 ? 'this channel keeps no history' : errorText(history);
    list.replaceChildren();
  }
}

// ---- connections --------------------------------------------------------------------------

function pickForDisconnect(conn) {
  $('disconnect-target').value = conn;
  $('disconnect-kind').value = 'conn';
  $('disconnect-target').focus();
}

async function lookup(ev) {
  ev.preventDefault();
  const target = $('lookup-target').value.trim();
  const kind = $('lookup-kind').value;
  if (!target) {
    result('lookup-result', false, 'name a connection id or a user');
    return;
  }
  const res = await call(`/connections?${kind}=${encodeURIComponent(target)}`);
  const conns = res.status === 200 ? res.body.connections : [];
  fill($('lookup-conns').tBodies[0], conns, (tr, c) => {
    tr.dataset.conn = c.conn;
    cell(tr, c.conn);
    cell(tr, c.shard);
    cell(tr, c.user ?? '(anonymous)');
    cell(tr, c.channels.join(', ') || '(none)');
    buttonCell(tr, 'Disconnect', c.conn, () => pickForDisconnect(c.conn));
  });
  result('lookup-result', res.status === 200,
    res.status === 200 ? `${conns.length} connection(s)` : errorText(res));
}

// ---- forms ----------------------------------------------------------------------------------

function result(id, ok, text) {
  const el = $(id);
  el.dataset.ok = ok ? 'true' : 'false';
  el.textContent = text;
}

async function disconnect(ev) {
  ev.preventDefault();
  const target = $('disconnect-target').value.trim();
  const kind = $('disconnect-kind').value;
  const code = Number($('disconnect-code').value);
  const reason = $('disconnect-reason').value;
  if (!target) {
    result('disconnect-result', false, 'name a connection id or a user');
    return;
  }
  const res = await call('/disconnect', { [kind]: target, code, reason });
  result('disconnect-result', res.status === 202,
    res.status === 202 ? `disconnected ${kind} ${target} with ${code}` : errorText(res));
}

async function publish(ev) {
  ev.preventDefault();
  const channel = $('publish-channel').value.trim();
  const raw = $('publish-data').value;
  let data;
  try { data = JSON.parse(raw); } catch { data = raw; }
  const res = await call('/publish', { channel, data });
  result('publish-result', res.status === 202,
    res.status === 202 ? `published to ${channel}` : errorText(res));
}

$('channels-refresh').addEventListener('click', refreshChannels);
$('channel-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('channel-name').value.trim();
  if (name) showChannel(name);
});
$('lookup-form').addEventListener('submit', lookup);
$('disconnect-form').addEventListener('submit', disconnect);
$('publish-form').addEventListener('submit', publish);
poll();
(async function channelsLoop() {
  await refreshChannels();
  setTimeout(channelsLoop, CHANNELS_MS);
})();
