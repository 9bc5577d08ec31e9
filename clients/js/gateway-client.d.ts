// Type declarations for gateway-client.js: a client of the gateway's JSON protocol on `/ws`.

/** Any JSON value: what `data` may hold. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A WebSocket constructor as browsers define it (Node's `ws` package fits). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** While waiting out a reconnect delay, try at once. */
  reconnectNow(): void;
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string[]) => WebSocketLike;

export interface ClientOptions {
  /** WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Token presented on every connect (see `tokenIn`). */
  token?: string;
  /** How the token travels: `'protocol'` (default) offers the subprotocols `bearer` and
   *  `bearer.<token>`, which keeps the token out of URLs and so out of access logs (the gateway
   *  selects `bearer`, never echoing the token); `'query'` sends `?token=`. */
  tokenIn?: 'protocol' | 'query';
  /** Called before every connect for a fresh token; also makes 4001 (token expired)
   *  reconnect. A rejection counts as a failed attempt and is retried with backoff. */
  tokenProvider?: () => string | Promise<string>;
  /** Nickname sent as `?user=` (anonymous connections). */
  user?: string;
  /** Reply timeout for requests, in ms. Default 10000. */
  requestTimeoutMs?: number;
  /** First reconnect delay cap, in ms; doubles per failed attempt. Default 500. */
  backoffBaseMs?: number;
  /** Largest reconnect delay cap, in ms. Default 30000. */
  backoffMaxMs?: number;
  /** 'full' (default): a delay anywhere below the cap; 'equal': half the cap plus up to the
   *  other half at random. */
  jitter?: 'full' | 'equal';
  /** A connection open this long resets the backoff, in ms. Default 10000. */
  stableMs?: number;
  /** After this long without inbound traffic the client sends a `ping` request, in ms;
   *  0 turns the heartbeat off. Default 30000 (the gateway pings after 25 s of silence). */
  heartbeatIdleMs?: number;
  /** Without any traffic this long after that ping, the socket is dropped and the client
   *  reconnects, in ms. Default 10000. */
  heartbeatTimeoutMs?: number;
  /** `false`: never reconnect. Default true. */
  reconnect?: boolean;
  /** Close codes that also reconnect (a backend's own 4000-4999 codes, for example). */
  reconnectCodes?: number[];
  /** Decides per close; return undefined to fall back to the default rules. */
  shouldReconnect?: (close: { code: number; reason: string }) => boolean | undefined;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateEvent {
  state: ConnectionState;
  /** Close code and reason ('reconnecting', 'closed'). */
  code?: number;
  reason?: string;
  /** Delay before the next attempt ('reconnecting'), in ms. */
  delayMs?: number;
  /** Attempts since the last stable connection ('connecting', 'reconnecting'). */
  attempt?: number;
  /** The connection's id and user ('open'). */
  conn?: string | null;
  user?: string | null;
}

export interface Welcome {
  conn: string | null;
  user: string | null;
}

/** A channel message. `offset` is present on channels with history. */
export interface ChannelMessage {
  type: 'message';
  channel: string;
  data: Json;
  from: string | null;
  user?: string | null;
  offset?: number;
}

export interface DirectMessage {
  type: 'direct';
  from: string | null;
  user?: string | null;
  data: Json;
}

export interface PresenceEvent {
  type: 'join' | 'leave';
  channel: string;
  conn: string;
  user: string | null;
}

export interface Member {
  conn: string;
  user: string | null;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface SubscribedEvent {
  channel: string;
  /** The stream's position (channels with history), else null. */
  offset: number | null;
  epoch: string | null;
  /** true/false after a subscribe with `recover`, else null. */
  recovered: boolean | null;
  /** false for the first subscribe, true after a reconnect. */
  resubscribed: boolean;
}

/** Messages were missed and cannot be replayed: reload the state from elsewhere, then carry on
 *  from `offset`/`epoch` (both null when the channel no longer keeps history). */
export interface UnrecoveredEvent {
  channel: string;
  offset: number | null;
  epoch: string | null;
  /** The position the client had. */
  lost: Position | null;
}

export interface History {
  offset: number;
  epoch: string;
  publications: ChannelMessage[];
}

export interface SubscriptionHandlers {
  onMessage?: (msg: ChannelMessage) => void;
  onJoin?: (ev: PresenceEvent) => void;
  onLeave?: (ev: PresenceEvent) => void;
  onSubscribed?: (ev: SubscribedEvent) => void;
  onUnrecovered?: (ev: UnrecoveredEvent) => void;
  /** The gateway refused the subscription; it is over. */
  onError?: (err: GatewayError) => void;
}

export interface Subscription {
  readonly channel: string;
  /** Last offset delivered, null until known (or on channels without history). */
  readonly offset: number | null;
  readonly epoch: string | null;
  /** Settles with the first subscribe reply; rejects if the gateway refuses it. */
  readonly ready: Promise<SubscribedEvent>;
  position(): Position | null;
  unsubscribe(): Promise<void>;
}

export interface RequestOptions {
  timeoutMs?: number;
}

export interface ClientEvents {
  state: StateEvent;
  welcome: Welcome;
  message: ChannelMessage;
  direct: DirectMessage;
  join: PresenceEvent;
  leave: PresenceEvent;
  subscribed: SubscribedEvent;
  unrecovered: UnrecoveredEvent;
  /** The gateway lost messages of `channel` on the way (a full queue between its threads or
   *  nodes). On a channel with history the client recovers them by itself. */
  gap: { type: 'gap'; channel: string };
  error: Error;
}

/** A refused or failed request. `code` is the protocol's error code, or `timeout`,
 *  `disconnected` (the connection closed before the reply), `closed` (the client is closed). */
export class GatewayError extends Error {
  readonly code: string;
  readonly detail: string;
}

export function isReconnectCode(code: number, opts?: { canRefreshToken?: boolean }): boolean;

export class GatewayClient {
  /** `url`: the `/ws` address, or several (the nodes of one deployment): after a lost
   *  connection the client goes to the next one. */
  constructor(url: string | string[], options?: ClientOptions);
  readonly state: ConnectionState;
  /** This connection's id (a decimal string) while open. */
  readonly conn: string | null;
  readonly user: string | null;
  on<K extends keyof ClientEvents>(event: K, fn: (value: ClientEvents[K]) => void): () => void;
  connect(): Promise<Welcome>;
  close(code?: number, reason?: string): void;
  /** While waiting out a reconnect delay, try at once. */
  reconnectNow(): void;
  subscribe(channel: string, handlers?: SubscriptionHandlers): Subscription;
  publish(channel: string, data: Json, opts?: RequestOptions & { skipSelf?: boolean }): Promise<void>;
  send(conn: string, data: Json, opts?: RequestOptions): Promise<void>;
  presence(channel: string, opts?: RequestOptions): Promise<Member[]>;
  history(channel: string, opts?: RequestOptions & { limit?: number }): Promise<History>;
  refresh(token: string, opts?: RequestOptions): Promise<void>;
  ping(opts?: RequestOptions): Promise<void>;
  /** Any request; resolves with the whole `ok` reply. */
  request(op: string, fields?: Record<string, Json>, opts?: RequestOptions): Promise<Record<string, Json>>;
}
