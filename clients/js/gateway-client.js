// A client for the gateway's JSON protocol on `/ws` (gateway/docs/client-protocol.md), as one
// plain ES module with no dependencies: it runs unchanged in browsers and in Node (pass a
// WebSocket constructor where the platform has none).
//
// The client owns one socket at a time. Requests carry ids and resolve from their replies;
// subscriptions outlive sockets: after a close that the close-code table
// (gateway/docs/close-codes.md) calls transient, it reconnects with jittered exponential backoff
// and subscribes again with `recover` from the last (offset, epoch) it delivered, so a channel
// with history continues without gap or duplicate, or says `unrecovered` when it cannot.

/** Close codes after which coming back is right: going away, no status, abnormal drop, internal
 *  error, service restart, try again later, bad gateway, slow consumer. */
const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 4008]);
/** The token expired: reconnecting helps only with a fresh token. */
const TOKEN_EXPIRED = 4001;
/** Code used locally when the client itself gives up on a silent socket. */
const ABNORMAL = 1006;

const DEFAULTS = {
  requestTimeoutMs: 10000,
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  stableMs: 10000,
  // The gateway pings a connection silent for 25 s (`--ping-interval`); a client that heard
  // nothing for that long asks itself, and gives up when the answer does not come in time.
  heartbeatIdleMs: 30000,
  heartbeatTimeoutMs: 10000,
  // A token in the subprotocol list stays out of URLs, so out of access logs and Referer.
  tokenIn: 'protocol',
};

/** The subprotocol prefix that carries a token; the gateway never echoes it back, it selects the
 *  plain `bearer` offered next to it (browsers fail a handshake that selects no protocol). */
const BEARER_PREFIX = 'bearer.';
const BEARER = 'bearer';

/** A refused request: `code` is the protocol's error code (`forbidden`, `bad_channel`...) or one
 *  of the client's own: `timeout`, `disconnected`, `closed`. */
export class GatewayError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = message ?? '';
  }
}

/** Whether a close with `code` should be followed by a reconnect under the default rules. */
export function isReconnectCode(code, { canRefreshToken = false } = {}) {
  return RECONNECT_CODES.has(code) || (code === TOKEN_EXPIRED && canRefreshToken);
}

/** One channel the client wants to receive. Created by `GatewayClient.subscribe`. */
class Subscription {
  constructor(client, channel, handlers) {
    this.client = client;
    this.channel = channel;
    this.handlers = handlers;
    /** Last offset delivered (or the position at subscribe), null until known. */
    this.offset = null;
    /** Epoch of `offset`, null on channels without history. */
    this.epoch = null;
    this.active = true;
    this.settled = false;
    /** Between a gap and the answer to the resubscribe that fills it. */
    this.resyncing = false;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A caller that never awaits `ready` must not see an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** Stop receiving the channel; resolves once the gateway confirmed (or at once if offline). */
  unsubscribe() {
    return this.client.unsubscribeChannel(this);
  }

  /** The position to recover from after a reconnect, or null. */
  position() {
    if (this.offset === null || this.epoch === null) return null;
    return { offset: this.offset, epoch: this.epoch };
  }
}

export class GatewayClient {
  /**
   * @param {string | string[]} url `ws://host:port/ws` (or `wss:`); several: the nodes of one
   *   deployment, tried in turn, the next one after each lost connection.
   * @param {object} [options] see gateway-client.d.ts.
   */
  constructor(url, options = {}) {
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new TypeError('no url to connect to');
    /** The address the next connection goes to. */
    this.url = this.urls[0];
    this.urlIndex = 0;
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('no WebSocket constructor: pass one as the WebSocket option');
    }
    this.extraReconnectCodes = new Set(options.reconnectCodes ?? []);
    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'idle';
    this.conn = null;
    this.user = null;
    this.socket = null;
    this.nextId = 1;
    /** id -> { resolve, reject, timer } for requests on the wire. */
    this.pending = new Map();
    /** Requests waiting for the connection to open. */
    this.queued = [];
    /** channel -> Subscription */
    this.subscriptions = new Map();
    this.listeners = new Map();
    this.attempt = 0;
    this.openedAt = 0;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.lastHeard = 0;
    this.heartbeatSentAt = 0;
    this.waiters = [];
  }

  // ---- events -------------------------------------------------------------------------------

  /** Call `fn` on each `event`; returns a function that removes it. */
  on(event, fn) {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(event, value) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (e) {
        reportLater(e);
      }
    }
  }

  setState(state, detail = {}) {
    this.state = state;
    this.emit('state', { state, ...detail });
  }

  // ---- connection ---------------------------------------------------------------------------

  /** Open the connection (and keep it open). Resolves with `{conn, user}` at the welcome;
   *  rejects if the client closes for good first. */
  connect() {
    const welcomed = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.state === 'open') {
      this.settleWaiters(null);
    } else if (this.state === 'idle' || this.state === 'closed') {
      this.attempt = 0;
      this.open();
    }
    return welcomed;
  }

  /** While waiting out a reconnect delay, try now (the network is back, the page is visible). */
  reconnectNow() {
    if (this.state === 'reconnecting') this.open();
  }

  /** Close for good: no reconnect; pending requests reject with `closed`. */
  close(code = 1000, reason = 'client closed') {
    if (this.state === 'closed' || this.state === 'idle') return;
    const sock = this.socket;
    this.detach();
    if (sock) {
      try {
        sock.close(code, reason);
      } catch {
        sock.close();
      }
    }
    this.finish(code, reason);
  }

  async open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setState('connecting', { attempt: this.attempt });
    let target;
    try {
      target = await this.connectTarget();
    } catch (e) {
      this.emit('error', e);
      this.onClosed(ABNORMAL, 'token provider failed');
      return;
    }
    if (this.state !== 'connecting') return; // closed while the token was fetched
    let sock;
    try {
      sock =
        target.protocols.length === 0
          ? new this.WebSocket(target.url)
          : new this.WebSocket(target.url, target.protocols);
    } catch (e) {
      this.emit('error', e);
      this.onClosed(ABNORMAL, e instanceof Error ? e.message : 'cannot connect');
      return;
    }
    this.socket = sock;
    sock.onmessage = (ev) => {
      if (this.socket === sock) this.onFrame(ev.data);
    };
    // The close event that follows an error carries the code; an error alone says nothing new.
    sock.onerror = () => {};
    sock.onclose = (ev) => {
      if (this.socket !== sock) return;
      this.detach();
      this.onClosed(ev.code, ev.reason ?? '');
    };
    sock.onopen = () => {
      if (this.socket !== sock) return;
      this.openedAt = Date.now();
      this.heard();
    };
  }

  /** Where to connect and the subprotocols to offer: the token rides in a `bearer.<token>`
   *  subprotocol (or in `?token=` with `tokenIn: 'query'`), the nickname in `?user=`. */
  async connectTarget() {
    const u = new URL(this.url);
    let token = this.options.token;
    if (this.options.tokenProvider) token = await this.options.tokenProvider();
    const protocols = [];
    if (token) {
      if (this.options.tokenIn === 'query') u.searchParams.set('token', token);
      else protocols.push(BEARER, BEARER_PREFIX + token);
    }
    if (this.options.user) u.searchParams.set('user', this.options.user);
    return { url: u.toString(), protocols };
  }

  /** Forget the current socket: its later events are ignored, its timers stopped. */
  detach() {
    const sock = this.socket;
    this.socket = null;
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (sock) {
      sock.onmessage = null;
      sock.onopen = null;
      sock.onclose = null;
    }
    this.conn = null;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new GatewayError('disconnected', 'the connection closed before the reply'));
    }
    this.pending.clear();
  }

  onClosed(code, reason) {
    if (this.state === 'closed') return;
    if (this.openedAt !== 0 && Date.now() - this.openedAt >= this.options.stableMs) {
      this.attempt = 0;
    }
    this.openedAt = 0;
    if (!this.shouldReconnect(code, reason)) {
      this.finish(code, reason);
      return;
    }
    // Jitter spreads the returns of clients cut at the same moment: full picks anywhere below
    // the capped exponential delay, equal keeps half of it as a floor.
    const cap = Math.min(
      this.options.backoffMaxMs,
      this.options.backoffBaseMs * 2 ** Math.min(this.attempt, 20),
    );
    const floor = this.options.jitter === 'equal' ? cap / 2 : 0;
    const delayMs = floor + Math.random() * (cap - floor);
    this.attempt += 1;
    // With several nodes, the next one: positions (offset, epoch) hold on every node of a
    // deployment whose history is shared, so the subscriptions recover there.
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.url = this.urls[this.urlIndex];
    this.setState('reconnecting', { code, reason, delayMs, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.open(), delayMs);
  }

  shouldReconnect(code, reason) {
    if (this.options.reconnect === false) return false;
    if (this.options.shouldReconnect) {
      const verdict = this.options.shouldReconnect({ code, reason });
      if (typeof verdict === 'boolean') return verdict;
    }
    return (
      isReconnectCode(code, { canRefreshToken: Boolean(this.options.tokenProvider) }) ||
      this.extraReconnectCodes.has(code)
    );
  }

  /** The client stops for good: everything waiting is told. */
  finish(code, reason) {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.openedAt = 0;
    const err = new GatewayError('closed', `connection closed (${code}${reason ? ` ${reason}` : ''})`);
    for (const q of this.queued) {
      clearTimeout(q.timer);
      q.reject(err);
    }
    this.queued = [];
    for (const sub of this.subscriptions.values()) {
      if (!sub.settled) {
        sub.settled = true;
        sub.rejectReady(err);
      }
    }
    this.settleWaiters(err);
    this.setState('closed', { code, reason });
  }

  settleWaiters(err) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve({ conn: this.conn, user: this.user });
    }
  }

  onWelcome(msg) {
    this.conn = typeof msg.conn === 'string' ? msg.conn : null;
    this.user = typeof msg.user === 'string' ? msg.user : null;
    // Everything owed to the new connection goes out before any listener runs, so a listener
    // that subscribes is not sent twice.
    this.state = 'open';
    for (const sub of this.subscriptions.values()) this.sendSubscribe(sub);
    const queued = this.queued;
    this.queued = [];
    for (const q of queued) this.transmit(q);
    this.setState('open', { conn: this.conn, user: this.user });
    this.emit('welcome', { conn: this.conn, user: this.user });
    this.settleWaiters(null);
  }

  // ---- heartbeat ----------------------------------------------------------------------------

  /** Note inbound traffic and make sure the silence check is armed. */
  heard() {
    this.lastHeard = Date.now();
    this.heartbeatSentAt = 0;
    if (this.heartbeatTimer === null && this.options.heartbeatIdleMs > 0) {
      this.heartbeatTimer = setTimeout(() => this.checkSilence(), this.options.heartbeatIdleMs);
    }
  }

  // One timer per socket, re-armed for the remaining time rather than reset per message.
  checkSilence() {
    this.heartbeatTimer = null;
    const sock = this.socket;
    if (!sock) return;
    const now = Date.now();
    if (this.heartbeatSentAt !== 0) {
      const waited = now - this.heartbeatSentAt;
      if (waited >= this.options.heartbeatTimeoutMs) {
        this.drop(sock, 'heartbeat timeout');
        return;
      }
      this.heartbeatTimer = setTimeout(
        () => this.checkSilence(),
        this.options.heartbeatTimeoutMs - waited,
      );
      return;
    }
    const silent = now - this.lastHeard;
    if (silent < this.options.heartbeatIdleMs) {
      this.heartbeatTimer = setTimeout(
        () => this.checkSilence(),
        this.options.heartbeatIdleMs - silent,
      );
      return;
    }
    // Any answer (or any other traffic) proves the path alive; `heard` clears the mark.
    this.heartbeatSentAt = now;
    try {
      sock.send(JSON.stringify({ op: 'ping' }));
    } catch {
      // A socket that cannot send is dropped by the timeout below.
    }
    this.heartbeatTimer = setTimeout(() => this.checkSilence(), this.options.heartbeatTimeoutMs);
  }

  /** Give up on a socket that may never deliver its close event, and reconnect now. */
  drop(sock, reason) {
    this.detach();
    try {
      if (typeof sock.terminate === 'function') sock.terminate();
      else sock.close(4000, reason);
    } catch {
      // Already closing.
    }
    this.onClosed(ABNORMAL, reason);
  }

  // ---- requests -----------------------------------------------------------------------------

  /** Send `{op, ...fields}` with an id; resolves with the `ok` reply, rejects with a
   *  GatewayError. Waits for the connection while the client is (re)connecting. */
  request(op, fields = {}, { timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed' || this.state === 'idle') {
        reject(new GatewayError('closed', 'the client is not connected'));
        return;
      }
      const q = { op, fields, resolve, reject, timer: null };
      const limit = timeoutMs ?? this.options.requestTimeoutMs;
      q.timer = setTimeout(() => {
        const i = this.queued.indexOf(q);
        if (i >= 0) this.queued.splice(i, 1);
        if (q.id !== undefined) this.pending.delete(q.id);
        reject(new GatewayError('timeout', `no reply to ${op} within ${limit} ms`));
      }, limit);
      if (this.state === 'open' && this.socket) this.transmit(q);
      else this.queued.push(q);
    });
  }

  transmit(q) {
    q.id = this.nextId++;
    this.pending.set(q.id, q);
    this.socket.send(JSON.stringify({ ...q.fields, op: q.op, id: q.id }));
  }

  onReply(msg) {
    const q = this.pending.get(msg.id);
    if (!q) return;
    this.pending.delete(msg.id);
    clearTimeout(q.timer);
    if (msg.ok) {
      q.resolve(msg);
    } else {
      const e = msg.error ?? {};
      q.reject(new GatewayError(String(e.code ?? 'error'), e.message ?? ''));
    }
  }

  /** Publish `data` (any JSON value) on `channel`. */
  publish(channel, data, { skipSelf = false, timeoutMs } = {}) {
    const fields = { channel, data };
    if (skipSelf) fields.skip_self = true;
    return this.request('publish', fields, { timeoutMs }).then(() => undefined);
  }

  /** Send `data` privately to the connection `conn` (a decimal id string). */
  send(conn, data, { timeoutMs } = {}) {
    return this.request('send', { conn, data }, { timeoutMs }).then(() => undefined);
  }

  /** The connections subscribed to `channel`: `[{conn, user}]`. */
  presence(channel, { timeoutMs } = {}) {
    return this.request('presence', { channel }, { timeoutMs }).then((r) => r.members ?? []);
  }

  /** The channel's last publications: `{offset, epoch, publications}` (oldest first). */
  history(channel, { limit, timeoutMs } = {}) {
    const fields = { channel };
    if (limit !== undefined) fields.limit = limit;
    return this.request('history', fields, { timeoutMs }).then((r) => ({
      offset: r.offset,
      epoch: r.epoch,
      publications: r.publications ?? [],
    }));
  }

  /** Replace the connection's token before it expires. */
  refresh(token, { timeoutMs } = {}) {
    return this.request('refresh', { token }, { timeoutMs }).then(() => undefined);
  }

  /** An application-level round trip. */
  ping({ timeoutMs } = {}) {
    return this.request('ping', {}, { timeoutMs }).then(() => undefined);
  }

  // ---- subscriptions ------------------------------------------------------------------------

  /** Receive `channel` with `handlers` ({onMessage, onJoin, onLeave, onSubscribed,
   *  onUnrecovered, onError}) until `unsubscribe`, across reconnects. */
  subscribe(channel, handlers = {}) {
    if (this.subscriptions.has(channel)) {
      throw new Error(`already subscribed to ${channel}`);
    }
    const sub = new Subscription(this, channel, handlers);
    this.subscriptions.set(channel, sub);
    if (this.state === 'open' && this.socket) this.sendSubscribe(sub);
    return sub;
  }

  sendSubscribe(sub) {
    const fields = { channel: sub.channel };
    const recover = sub.position();
    if (recover) fields.recover = recover;
    const q = {
      op: 'subscribe',
      fields,
      timer: null,
      resolve: (reply) => this.onSubscribed(sub, reply, recover),
      reject: (err) => this.onSubscribeFailed(sub, err, recover),
    };
    this.transmit(q);
  }

  onSubscribed(sub, reply, recover) {
    if (!sub.active) return;
    sub.resyncing = false;
    if (typeof reply.epoch === 'string' && typeof reply.offset === 'number') {
      if (reply.recovered === false) {
        const lost = recover;
        sub.epoch = reply.epoch;
        sub.offset = reply.offset;
        const info = { channel: sub.channel, offset: reply.offset, epoch: reply.epoch, lost };
        call(sub.handlers.onUnrecovered, info);
        this.emit('unrecovered', info);
      } else if (reply.recovered === true) {
        // The replay that follows brings `offset` up to the reply's.
        sub.epoch = reply.epoch;
      } else if (sub.epoch !== reply.epoch || sub.offset === null) {
        sub.epoch = reply.epoch;
        sub.offset = reply.offset;
      } else {
        sub.offset = Math.max(sub.offset, reply.offset);
      }
    }
    const info = {
      channel: sub.channel,
      offset: reply.offset ?? null,
      epoch: reply.epoch ?? null,
      recovered: reply.recovered ?? null,
      resubscribed: sub.settled,
    };
    if (!sub.settled) {
      sub.settled = true;
      sub.resolveReady(info);
    }
    call(sub.handlers.onSubscribed, info);
    this.emit('subscribed', info);
  }

  onSubscribeFailed(sub, err, recover) {
    // A lost connection resubscribes on the next welcome; a refusal ends the subscription.
    if (!sub.active || err.code === 'disconnected') return;
    sub.resyncing = false;
    if (err.code === 'no_history' && recover) {
      // The channel stopped keeping history (the gateway was reconfigured): what was missed
      // cannot be replayed, but the channel itself is still there.
      sub.offset = null;
      sub.epoch = null;
      const info = { channel: sub.channel, offset: null, epoch: null, lost: recover };
      call(sub.handlers.onUnrecovered, info);
      this.emit('unrecovered', info);
      if (this.state === 'open' && this.socket) this.sendSubscribe(sub);
      return;
    }
    sub.active = false;
    if (this.subscriptions.get(sub.channel) === sub) this.subscriptions.delete(sub.channel);
    if (!sub.settled) {
      sub.settled = true;
      sub.rejectReady(err);
    }
    call(sub.handlers.onError, err);
    this.emit('error', err);
  }

  unsubscribeChannel(sub) {
    if (!sub.active) return Promise.resolve();
    sub.active = false;
    if (this.subscriptions.get(sub.channel) === sub) this.subscriptions.delete(sub.channel);
    if (!sub.settled) {
      sub.settled = true;
      sub.rejectReady(new GatewayError('unsubscribed', 'unsubscribed before the reply'));
    }
    if (this.state !== 'open' || !this.socket) return Promise.resolve();
    return this.request('unsubscribe', { channel: sub.channel }).then(
      () => undefined,
      (err) => {
        // Not subscribed any more, or no connection: either way the channel is off.
        if (err.code === 'not_subscribed' || err.code === 'disconnected') return undefined;
        throw err;
      },
    );
  }

  // ---- incoming -----------------------------------------------------------------------------

  onFrame(data) {
    this.heard();
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'welcome':
        this.onWelcome(msg);
        break;
      case 'reply':
        this.onReply(msg);
        break;
      case 'message':
        this.onMessage(msg);
        break;
      case 'skipped':
        this.onSkipped(msg);
        break;
      case 'gap': {
        // Messages of the channel were lost on the way: recover them where the channel keeps
        // history; elsewhere the application hears of it and reloads what matters.
        const sub = this.subscriptions.get(msg.channel);
        if (sub && sub.epoch !== null && !sub.resyncing) this.resync(sub);
        this.emit('gap', msg);
        break;
      }
      case 'direct':
        this.emit('direct', msg);
        break;
      case 'join':
      case 'leave': {
        const sub = this.subscriptions.get(msg.channel);
        if (sub) call(msg.type === 'join' ? sub.handlers.onJoin : sub.handlers.onLeave, msg);
        this.emit(msg.type, msg);
        break;
      }
      default:
        break;
    }
  }

  onMessage(msg) {
    const sub = this.subscriptions.get(msg.channel);
    if (!sub) return;
    if (typeof msg.offset === 'number') {
      // The resubscribe under way replays this one in its place.
      if (sub.resyncing) return;
      // At or before the last one delivered: a replay overlapping what was already seen.
      if (sub.offset !== null && msg.offset <= sub.offset) return;
      if (sub.offset !== null && sub.epoch !== null && msg.offset > sub.offset + 1) {
        this.resync(sub);
        return;
      }
      sub.offset = msg.offset;
    }
    call(sub.handlers.onMessage, msg);
    this.emit('message', msg);
  }

  /** The position of this client's own publication, which it asked not to get (`skipSelf`):
   *  the offset advances with no message, so the next delivery is no hole. */
  onSkipped(msg) {
    const sub = this.subscriptions.get(msg.channel);
    if (!sub || typeof msg.offset !== 'number' || sub.resyncing) return;
    if (sub.offset !== null && msg.offset <= sub.offset) return;
    if (sub.offset !== null && sub.epoch !== null && msg.offset > sub.offset + 1) {
      this.resync(sub);
      return;
    }
    sub.offset = msg.offset;
  }

  /** Offsets jumped while connected (the gateway refused a publish `busy` for this thread):
   *  subscribe again with `recover` from the last offset delivered, so the missed ones come in
   *  order before anything later. Deliveries until the answer are dropped; they are replayed. */
  resync(sub) {
    sub.resyncing = true;
    this.request('unsubscribe', { channel: sub.channel }).catch(() => {});
    this.sendSubscribe(sub);
  }
}

function call(fn, value) {
  if (typeof fn !== 'function') return;
  try {
    fn(value);
  } catch (e) {
    reportLater(e);
  }
}

/** A handler's exception must not break the client's state: rethrow it outside. */
function reportLater(e) {
  setTimeout(() => {
    throw e;
  }, 0);
}
