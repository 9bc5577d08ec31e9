// The chat page's client. It speaks the JSON protocol on `/ws` (gateway/docs/client-protocol.md):
// the nickname goes in `?user=`, the room is the channel `room:<name>`, the member list comes from
// a `presence` request kept current by `join` / `leave` events, room messages are published with
// `skip_self` (and shown locally at once), private messages are `send` to one connection id.
// After a close whose code advises it, the page reconnects with exponential backoff and jitter and
// joins the room again. Every piece of peer text reaches the page through `textContent`.
'use strict';

(() => {
  /** First reconnect delay (before jitter); doubles per failed attempt up to the maximum. */
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  /** A connection that stayed open this long starts the next backoff from the base again. */
  const STABLE_MS = 10000;
  /** Entries kept in the message log; older ones are removed. */
  const LOG_LIMIT = 500;
  /** Members drawn in the list; the rest are counted. */
  const MEMBER_LIMIT = 500;
  const NICK_MAX = 32;
  /** The room name becomes part of a channel name, so it uses the channel alphabet. */
  const ROOM_RE = /^[A-Za-z0-9_.@/-]{1,64}$/;
  /** Close codes after which a client should come back (the gateway's close-code table):
   *  going away / restart / internal error / abnormal drop / expired token / slow consumer. */
  const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 4001, 4008]);

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
  /** True while the user wants to be in the room (between Join and Leave). */
  let wanted = false;
  let ws = null;
  let open = false;
  let openedAt = 0;
  let myConn = null;
  let myUser = null;
  let nextId = 1;
  /** Outstanding requests: id -> reply handler. */
  const pending = new Map();
  /** The room's connections: conn id -> user name (or null). */
  const members = new Map();
  /** Join/leave events seen while a presence request is outstanding, replayed on its reply. */
  let presenceEvents = null;
  /** The member private messages go to, or null for the room. */
  let target = null;
  let attempt = 0;
  let retryTimer = 0;
  let countdownTimer = 0;

  // ---- connection -------------------------------------------------------------------------

  function connect() {
    clearTimers();
    setState('connecting', 'connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws?user=${encodeURIComponent(nick)}`;
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      onClosed(1006, e instanceof Error ? e.message : '');
      return;
    }
    ws = sock;
    sock.onopen = () => {
      if (ws === sock) onOpen();
    };
    sock.onmessage = (ev) => {
      if (ws === sock && typeof ev.data === 'string') onFrame(ev.data);
    };
    // The close event that always follows carries the code; nothing to do on `error`.
    sock.onerror = () => {};
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      onClosed(ev.code, ev.reason);
    };
  }

  function onOpen() {
    open = true;
    openedAt = Date.now();
    setState('open', 'open');
    updateSendEnabled();
    request('subscribe', { channel }, (r) => {
      if (!r.ok) system(`could not join ${channel}: ${errorText(r)}`);
    });
    refreshPresence();
  }

  function onClosed(code, reason) {
    const wasOpen = open;
    open = false;
    myConn = null;
    presenceEvents = null;
    for (const [, onReply] of pending) {
      onReply({ ok: false, error: { code: 'disconnected', message: 'connection lost before the reply' } });
    }
    pending.clear();
    members.clear();
    renderMembers();
    updateSendEnabled();
    const label = closeLabel(code, reason);
    if (!wanted) {
      setState('closed', `closed (${label})`);
      return;
    }
    if (!RECONNECT_CODES.has(code)) {
      wanted = false;
      setState('closed', `closed (${label})`);
      system(`disconnected (${label}); not reconnecting`);
      showJoin();
      return;
    }
    if (wasOpen) system(`connection lost (${label}); reconnecting`);
    if (openedAt !== 0 && Date.now() - openedAt >= STABLE_MS) attempt = 0;
    openedAt = 0;
    // Equal jitter: half the capped exponential delay is fixed, half random, so a restarted
    // server is not hit by every client at the same instant.
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
    const delay = cap / 2 + Math.random() * (cap / 2);
    attempt += 1;
    scheduleReconnect(delay, label);
  }

  function scheduleReconnect(delayMs, label) {
    clearTimers();
    const at = Date.now() + delayMs;
    const tick = () => {
      const secs = Math.max(1, Math.ceil((at - Date.now()) / 1000));
      setState('reconnecting', 'reconnecting', ` in ${secs}s (last close ${label})`);
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delayMs);
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = 0;
    countdownTimer = 0;
  }

  function closeLabel(code, reason) {
    return reason ? `${code} ${reason}` : String(code);
  }

  function request(op, fields, onReply) {
    if (!ws || !open) {
      onReply({ ok: false, error: { code: 'disconnected', message: 'not connected' } });
      return;
    }
    const id = nextId++;
    pending.set(id, onReply);
    ws.send(JSON.stringify({ op, ...fields, id }));
  }

  // ---- incoming ---------------------------------------------------------------------------

  function onFrame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'welcome':
        myConn = typeof msg.conn === 'string' ? msg.conn : null;
        myUser = typeof msg.user === 'string' ? msg.user : null;
        ui.me.textContent = myUser ?? nick;
        renderMembers();
        break;
      case 'reply': {
        const onReply = pending.get(msg.id);
        if (onReply) {
          pending.delete(msg.id);
          onReply(msg);
        }
        break;
      }
      case 'message':
        if (msg.channel !== channel) return;
        addEntry({
          kind: 'room',
          who: str(msg.user) ?? nameOf(msg.from),
          text: dataText(msg.data),
        });
        break;
      case 'direct':
        addEntry({
          kind: 'private',
          who: str(msg.user) ?? (msg.from == null ? 'server' : nameOf(msg.from)),
          to: 'you',
          text: dataText(msg.data),
        });
        break;
      case 'join':
      case 'leave':
        if (msg.channel !== channel || typeof msg.conn !== 'string') return;
        if (presenceEvents) presenceEvents.push(msg);
        applyPresence(msg, true);
        renderMembers();
        break;
      default:
        break;
    }
  }

  function refreshPresence() {
    presenceEvents = [];
    request('presence', { channel }, (r) => {
      const events = presenceEvents ?? [];
      presenceEvents = null;
      if (!r.ok) {
        if (r.error?.code !== 'disconnected') system(`could not list the room: ${errorText(r)}`);
        return;
      }
      members.clear();
      for (const m of Array.isArray(r.members) ? r.members : []) {
        if (m && typeof m.conn === 'string') members.set(m.conn, str(m.user));
      }
      // Events that crossed the request are applied again on top of the snapshot.
      for (const e of events) applyPresence(e, false);
      renderMembers();
    });
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

  // ---- outgoing ---------------------------------------------------------------------------

  function onSend(ev) {
    ev.preventDefault();
    const text = ui.text.value.trim();
    if (!text || !open) return;
    if (target) {
      const to = target;
      const entry = addEntry({ kind: 'private', who: 'you', to: to.name, text, status: 'pending' });
      request('send', { conn: to.conn, data: text }, (r) =>
        settle(entry, r, r.error?.code === 'unknown_connection' ? `${to.name} is no longer connected` : null));
    } else {
      const entry = addEntry({ kind: 'room', who: myUser ?? nick, text, status: 'pending' });
      request('publish', { channel, data: text, skip_self: true }, (r) => settle(entry, r, null));
    }
    ui.text.value = '';
  }

  function settle(entry, reply, why) {
    if (reply.ok) {
      delete entry.dataset.status;
      return;
    }
    entry.dataset.status = 'failed';
    const note = document.createElement('span');
    note.className = 'status';
    note.textContent = `not sent: ${why ?? errorText(reply)}`;
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

  function addEntry({ kind, who, to, text, status }) {
    const log = ui.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const li = document.createElement('li');
    li.className = 'msg';
    li.dataset.kind = kind;
    if (status) li.dataset.status = status;
    const now = new Date();
    const time = document.createElement('time');
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
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
    log.append(li);
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
    clearTimers();
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

  function errorText(reply) {
    const e = reply.error;
    return (e && (e.message || e.code)) || 'refused';
  }

  function colourClass(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return `c${h % 8}`;
  }

  // ---- wiring -----------------------------------------------------------------------------

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
    wanted = true;
    attempt = 0;
    setTarget(null);
    ui.log.replaceChildren();
    showRoom();
    connect();
  });

  ui.leave.addEventListener('click', () => {
    wanted = false;
    clearTimers();
    if (ws && open) {
      request('unsubscribe', { channel }, () => {});
      ws.close(1000, 'left');
    } else if (ws) {
      ws.close(1000, 'left');
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
    if (wanted && retryTimer) connect();
  });

  ui.nick.focus();
})();
