// The chat page. It uses the gateway's JavaScript client (served at /client/gateway-client.js,
// clients/js/README.md) for the JSON protocol on `/ws`: the nickname goes in `?user=`, the room is
// the channel `room:<name>`, the member list comes from a `presence` request kept current by
// `join` / `leave` events, room messages are published with `skip_self` (and shown locally at
// once), private messages are `send` to one connection id. The client reconnects after the close
// codes that advise it (with backoff and jitter) and subscribes to the room again; the page shows
// the countdown. Every piece of peer text reaches the page through `textContent`.

import { GatewayClient } from '/client/gateway-client.js';

/** First reconnect delay bound; doubles per failed attempt up to the maximum. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;
/** Entries kept in the message log; older ones are removed. */
const LOG_LIMIT = 500;
/** Members drawn in the list; the rest are counted. */
const MEMBER_LIMIT = 500;
const NICK_MAX = 32;
/** Recent room messages shown on joining a room that keeps history. */
const HISTORY_LIMIT = 50;
/** The room name becomes part of a channel name, so it uses the channel alphabet. */
const ROOM_RE = /^[A-Za-z0-9_.@/-]{1,64}$/;

const $ = (id) => document.getElementById(id);
const ui = {
  state: $('state'),
  joinPanel: $('join-panel'),
  joinForm: $('join-form'),
  nick: $('nick'),
  room: $('room'),
  joinError: $('join-error'),
  roomPanel: $('room-panel'),
  roomTitle: $('room-title'),
  me: $('me'),
  leave: $('leave'),
  log: $('log'),
  sendForm: $('send-form'),
  text: $('text'),
  send: $('send'),
  target: $('target'),
  targetName: $('target-name'),
  targetClear: $('target-clear'),
  membersPanel: $('members-panel'),
  members: $('members'),
  memberCount: $('member-count'),
};

let nick = '';
let room = '';
let channel = '';
/** The client while the user is in a room (between Join and Leave, reconnects included). */
let client = null;
let open = false;
let myConn = null;
let myUser = null;
/** The room's connections: conn id -> user name (or null). */
const members = new Map();
/** Join/leave events seen while a presence request is outstanding, replayed on its reply. */
let presenceEvents = null;
/** The member private messages go to, or null for the room. */
let target = null;
let countdownTimer = 0;

// ---- connection ---------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const c = new GatewayClient(`${scheme}//${location.host}/ws`, {
    user: nick,
    backoffBaseMs: BACKOFF_BASE_MS,
    backoffMaxMs: BACKOFF_MAX_MS,
    // Half the delay is fixed, so the countdown never flashes by.
    jitter: 'equal',
  });
  client = c;
  c.on('state', (s) => {
    if (client === c) onState(s);
  });
  c.on('welcome', (w) => {
    myConn = w.conn;
    myUser = w.user;
    ui.me.textContent = myUser ?? nick;
    renderMembers();
  });
  c.on('direct', (m) => {
    addEntry({
      kind: 'private',
      who: str(m.user) ?? (m.from == null ? 'server' : nameOf(m.from)),
      to: 'you',
      text: dataText(m.data),
    });
  });
  c.subscribe(channel, {
    onMessage: (m) => {
      addEntry({ kind: 'room', who: str(m.user) ?? nameOf(m.from), text: dataText(m.data) });
    },
    onJoin: onPresenceEvent,
    onLeave: onPresenceEvent,
    // After every (re)subscribe: the member list starts again from a snapshot. On joining, a
    // room that keeps history shows its recent messages; after a reconnect the library
    // recovers what was missed instead.
    onSubscribed: (ev) => {
      refreshPresence();
      if (!ev.resubscribed) showHistory(c, ev.offset);
    },
    onError: (err) => system(`could not join ${channel}: ${errorText(err)}`),
  });
  c.connect().catch(() => {});
}

function onState(s) {
  clearInterval(countdownTimer);
  countdownTimer = 0;
  const wasOpen = open;
  open = s.state === 'open';
  updateSendEnabled();
  if (!open) {
    myConn = null;
    presenceEvents = null;
    members.clear();
    renderMembers();
  }
  const label = s.code === undefined ? '' : closeLabel(s.code, s.reason);
  switch (s.state) {
    case 'connecting':
      setState('connecting', 'connecting');
      break;
    case 'open':
      setState('open', 'open');
      break;
    case 'reconnecting': {
      if (wasOpen) system(`connection lost (${label}); reconnecting`);
      const at = Date.now() + s.delayMs;
      const tick = () => {
        const secs = Math.max(1, Math.ceil((at - Date.now()) / 1000));
        setState('reconnecting', 'reconnecting', ` in ${secs}s (last close ${label})`);
      };
      tick();
      countdownTimer = setInterval(tick, 250);
      break;
    }
    case 'closed':
      client = null;
      setState('closed', `closed (${label})`);
      // Closed by the gateway with a code that says not to come back.
      if (s.code !== 1000 || s.reason !== 'left') {
        system(`disconnected (${label}); not reconnecting`);
        showJoin();
      }
      break;
    default:
      break;
  }
}

function closeLabel(code, reason) {
  return reason ? `${code} ${reason}` : String(code);
}

// ---- incoming -----------------------------------------------------------------------------

function onPresenceEvent(e) {
  if (typeof e.conn !== 'string') return;
  if (presenceEvents) presenceEvents.push(e);
  applyPresence(e, true);
  renderMembers();
}

function refreshPresence() {
  const c = client;
  if (!c) return;
  presenceEvents = [];
  c.presence(channel).then(
    (list) => {
      const events = presenceEvents ?? [];
      presenceEvents = null;
      members.clear();
      for (const m of Array.isArray(list) ? list : []) {
        if (m && typeof m.conn === 'string') members.set(m.conn, str(m.user));
      }
      // Events that crossed the request are applied again on top of the snapshot.
      for (const e of events) applyPresence(e, false);
      renderMembers();
    },
    (err) => {
      presenceEvents = null;
      if (err.code !== 'disconnected' && err.code !== 'closed') {
        system(`could not list the room: ${errorText(err)}`);
      }
    },
  );
}

/** Show the room's recent messages above whatever arrived since the subscribe was answered:
 *  those up to `offset`, the position the subscribe reply gave (later ones come live). */
function showHistory(c, offset) {
  if (offset == null) return; // the room keeps no history
  const mark = ui.log.lastElementChild;
  c.history(channel, { limit: HISTORY_LIMIT }).then(
    (h) => {
      if (client !== c) return;
      const before = mark ? mark.nextElementSibling : ui.log.firstElementChild;
      for (const m of h.publications ?? []) {
        if (typeof m.offset !== 'number' || m.offset > offset) continue;
        const who = str(m.user) ?? (typeof m.from === 'string' ? nameOf(m.from) : null);
        addEntry({ kind: 'room', who, text: dataText(m.data), status: 'history', before });
      }
    },
    (err) => {
      if (err.code !== 'disconnected' && err.code !== 'closed' && err.code !== 'no_history') {
        system(`could not load the room's recent messages: ${errorText(err)}`);
      }
    },
  );
}

function applyPresence(e, announce) {
  const known = members.has(e.conn);
  if (e.type === 'join') {
    members.set(e.conn, str(e.user));
    if (announce && !known && e.conn !== myConn) system(`${nameOf(e.conn)} joined`);
  } else {
    if (announce && known && e.conn !== myConn) system(`${nameOf(e.conn)} left`);
    members.delete(e.conn);
  }
}

// ---- outgoing ----------------------------------------------------------------------------

function onSend(ev) {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !open || !client) return;
  if (target) {
    const to = target;
    const entry = addEntry({ kind: 'private', who: 'you', to: to.name, text, status: 'pending' });
    client.send(to.conn, text).then(
      () => settle(entry, null, null),
      (err) => {
        const gone = err.code === 'unknown_connection';
        settle(entry, err, gone ? `${to.name} is no longer connected` : null);
      },
    );
  } else {
    const entry = addEntry({ kind: 'room', who: myUser ?? nick, text, status: 'pending' });
    client.publish(channel, text, { skipSelf: true }).then(
      () => settle(entry, null, null),
      (err) => settle(entry, err, null),
    );
  }
  ui.text.value = '';
}

function settle(entry, err, why) {
  if (!err) {
    delete entry.dataset.status;
    return;
  }
  entry.dataset.status = 'failed';
  const note = document.createElement('span');
  note.className = 'status';
  note.textContent = `not sent: ${why ?? errorText(err)}`;
  entry.append(note);
}

// ---- rendering --------------------------------------------------------------------------

function setState(kind, text, detail) {
  ui.state.dataset.state = kind;
  ui.state.textContent = text;
  if (detail) {
    // The countdown changes every second: keep it out of what screen readers announce.
    const span = document.createElement('span');
    span.setAttribute('aria-hidden', 'true');
    span.textContent = detail;
    ui.state.append(span);
  }
}

function system(text) {
  addEntry({ kind: 'system', text });
}

/** Append an entry to the log (or insert it before `before`, for history). */
function addEntry({ kind, who, to, text, status, before = null }) {
  const log = ui.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const li = document.createElement('li');
  li.className = 'msg';
  li.dataset.kind = kind;
  if (status) li.dataset.status = status;
  const time = document.createElement('time');
  if (status !== 'history') {
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  li.append(time);
  if (kind === 'private') {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = 'private';
    li.append(tag);
  }
  if (who != null) {
    const span = document.createElement('span');
    span.className = `who ${colourClass(who)}`;
    span.textContent = to ? `${who} \u2192 ${to}` : who;
    li.append(span);
  }
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  li.append(body);
  if (before && before.parentNode === log) log.insertBefore(li, before);
  else log.append(li);
  while (log.childElementCount > LOG_LIMIT) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
  return li;
}

function renderMembers() {
  retarget();
  const sorted = [...members].sort(([ca, ua], [cb, ub]) => {
    if (ca === myConn) return -1;
    if (cb === myConn) return 1;
    return (ua ?? '').localeCompare(ub ?? '') || ca.localeCompare(cb);
  });
  const items = [];
  for (const [conn, user] of sorted.slice(0, MEMBER_LIMIT)) {
    const li = document.createElement('li');
    li.dataset.conn = conn;
    if (user != null) li.dataset.user = user;
    const name = user ?? guestName(conn);
    if (conn === myConn) {
      li.dataset.self = '';
      const span = document.createElement('span');
      span.className = 'self';
      span.textContent = `${name} (you)`;
      li.append(span);
    } else {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = name;
      b.title = `Send a private message to ${name}`;
      b.setAttribute('aria-label', `${name}: send a private message`);
      b.setAttribute('aria-pressed', String(target?.conn === conn));
      b.addEventListener('click', () => choose(conn, user));
      li.append(b);
    }
    items.push(li);
  }
  if (sorted.length > MEMBER_LIMIT) {
    const li = document.createElement('li');
    li.className = 'hint';
    li.textContent = `and ${sorted.length - MEMBER_LIMIT} more`;
    items.push(li);
  }
  ui.members.replaceChildren(...items);
  ui.memberCount.textContent = String(members.size);
}

/** Keep a private target across its reconnection: same user name, one new connection. */
function retarget() {
  if (!target || members.has(target.conn) || target.user == null) return;
  const same = [...members].filter(([c, u]) => u === target.user && c !== myConn);
  if (same.length === 1) target.conn = same[0][0];
}

function choose(conn, user) {
  if (target?.conn === conn) {
    setTarget(null);
  } else {
    setTarget({ conn, user, name: user ?? guestName(conn) });
  }
  ui.text.focus();
}

function setTarget(t) {
  target = t;
  ui.target.hidden = t === null;
  ui.targetName.textContent = t ? t.name : '';
  ui.text.placeholder = t ? `Private message to ${t.name}` : 'Message the room';
  renderMembers();
}

function updateSendEnabled() {
  ui.send.disabled = !open;
}

function showJoin() {
  clearInterval(countdownTimer);
  countdownTimer = 0;
  ui.roomPanel.hidden = true;
  ui.membersPanel.hidden = true;
  ui.joinPanel.hidden = false;
  document.title = 'Gateway chat';
  ui.nick.focus();
}

function showRoom() {
  ui.joinPanel.hidden = true;
  ui.roomPanel.hidden = false;
  ui.membersPanel.hidden = false;
  ui.roomTitle.textContent = `#${room}`;
  ui.me.textContent = nick;
  document.title = `#${room} \u2014 Gateway chat`;
  ui.text.focus();
}

// ---- helpers ----------------------------------------------------------------------------

function str(v) {
  return typeof v === 'string' ? v : null;
}

function nameOf(conn) {
  if (typeof conn !== 'string') return 'someone';
  return members.get(conn) ?? guestName(conn);
}

function guestName(conn) {
  return `guest-${conn.slice(-4)}`;
}

function dataText(data) {
  if (typeof data === 'string') return data;
  if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
  return JSON.stringify(data) ?? '';
}

function errorText(err) {
  return err.detail || err.code || 'refused';
}

function colourClass(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `c${h % 8}`;
}

// ---- wiring -------------------------------------------------------------------------------

ui.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const n = ui.nick.value.trim();
  const r = ui.room.value.trim();
  let problem = null;
  ui.nick.removeAttribute('aria-invalid');
  ui.room.removeAttribute('aria-invalid');
  if (n.length === 0 || n.length > NICK_MAX) {
    problem = `Pick a nickname of 1 to ${NICK_MAX} characters.`;
    ui.nick.setAttribute('aria-invalid', 'true');
  } else if (!ROOM_RE.test(r)) {
    problem = 'A room name is 1 to 64 letters, digits or _ . @ / -';
    ui.room.setAttribute('aria-invalid', 'true');
  }
  ui.joinError.hidden = problem === null;
  ui.joinError.textContent = problem ?? '';
  if (problem) return;
  nick = n;
  room = r;
  channel = `room:${r}`;
  setTarget(null);
  ui.log.replaceChildren();
  showRoom();
  connect();
});

ui.leave.addEventListener('click', () => {
  const c = client;
  if (c) {
    if (open) c.request('unsubscribe', { channel }).catch(() => {});
    c.close(1000, 'left');
  } else {
    setState('closed', 'closed (left)');
  }
  showJoin();
});

ui.sendForm.addEventListener('submit', onSend);
ui.targetClear.addEventListener('click', () => {
  setTarget(null);
  ui.text.focus();
});
ui.text.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && target) setTarget(null);
});
// Back online: try now instead of waiting out the backoff.
window.addEventListener('online', () => {
  client?.reconnectNow();
});

ui.nick.focus();
