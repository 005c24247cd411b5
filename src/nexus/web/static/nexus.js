// Nexus WebSocket client: a dependency-free ES module for browsers and Node (>= 20).
//
// Protocol v1 (docs/protocol.md). What it does for you:
// - a state machine: idle -> connecting -> open -> reconnecting -> ... -> closed;
// - reconnects with jittered exponential backoff, by close code: 4000-4499 (and network
//   failures, 1001, 1006, 1011) reconnect, 4500-4999 stop, 4003 asks for a fresh token;
// - resumes by seq: the last seq seen per room is kept in sessionStorage and sent as
//   `since` when the room is joined again, so nothing is missed and nothing is repeated;
// - an outbox keyed by `client_msg_id`: sends, edits and deletes made while disconnected
//   (or whose ack was lost) are sent again after the rooms are rejoined; the server's
//   idempotency turns a repeat into `duplicate: true`, never into a second message;
// - a ping watchdog: an application `ping` when the socket has been quiet, and a
//   reconnect when nothing comes back (browsers cannot send WebSocket PINGs);
// - a token hook: `token` may be a function, called before every connection with the
//   reason (`connect`, `expired`, `unauthorized`), so a page can fetch a fresh token.
//
// The same file is served to the web app (src/nexus/web/static/) and published as
// clients/js/nexus.js (a link to this file).

/** Connection states, in the order a client normally goes through them. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

/** Entry types that carry a room `seq` (logged entries); everything else is unsequenced. */
const ANSWERS = new Set(["ack", "room.joined", "room.left", "history.page", "error", "pong",
  "auth.ok", "task", "task.list", "search.results", "memory.record", "memory.results",
  "cancel.ok"]);

/** An error answered by the server (`code` is protocol.md §10's) or raised locally
 * (`disconnected`, `timeout`, `closed`). */
export class NexusError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "NexusError";
    this.code = code;
    for (const [key, value] of Object.entries(details)) {
      if (value !== undefined && key !== "code" && key !== "message") this[key] = value;
    }
  }
}

/**
 * What to do after a close: "reconnect", "refresh" (reconnect with a fresh token) or
 * "stop". protocol.md §11: 4000-4499 may reconnect, 4500-4999 must not without a change.
 */
export function closeAction(code) {
  if (code === 4003) return "refresh";
  if (code >= 4000 && code <= 4499) return "reconnect";
  if (code >= 4500 && code <= 4999) return "stop";
  // 1002 protocol error, 1007 invalid data, 1008 policy, 1009 too big: a client bug that
  // a reconnect would only repeat.
  if (code === 1002 || code === 1003 || code === 1007 || code === 1008 || code === 1009) {
    return "stop";
  }
  return "reconnect"; // 1000 from the server, 1001 going away, 1006 network, 1011, 1012...
}

/**
 * Delay before reconnect attempt `attempt` (0 for the first): exponential, capped, with
 * "equal jitter" (half fixed, half random), so a server restart does not bring every
 * client back in the same millisecond and no client retries in a tight loop.
 */
export function backoffDelay(attempt, { base = 500, max = 30000, random = Math.random } = {}) {
  const cap = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return cap / 2 + random() * (cap / 2);
}

/** Length in code points, the unit of `message.delta` offsets (protocol.md §5.12). */
function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/**
 * Assembles streamed agent replies (protocol.md §5.12) from `message.started`,
 * `message.delta`, `message.snapshot`, `message.completed` and `message.failed`, and from
 * finished `message.started` records in history. `apply(event)` returns the reply it
 * changed ({id, room, sender, text, state, finish_reason, ...}) or null.
 */
export class ReplyStreams {
  constructor() {
    this.replies = new Map();
  }

  get(id) {
    return this.replies.get(id) ?? null;
  }

  apply(event) {
    switch (event.type) {
      case "message.started": {
        const known = this.replies.get(event.id);
        const finished = event.state && event.state !== "streaming";
        const reply = known ?? { id: event.id, text: "", length: 0 };
        Object.assign(reply, {
          room: event.room, sender: event.sender, seq: event.seq, ts: event.ts,
          model: event.model, reply_to: event.reply_to ?? null,
          state: known && !finished ? known.state : event.state ?? "streaming",
        });
        if (finished && typeof event.text === "string") this.#setText(reply, event.text);
        if (finished) reply.finish_reason = event.finish_reason ?? null;
        this.replies.set(event.id, reply);
        return reply;
      }
      case "message.delta": {
        const reply = this.#ensure(event);
        if (reply.state !== "streaming") return null;
        const size = codePoints(event.text);
        if (event.offset + size <= reply.length) return null; // already held
        if (event.offset > reply.length) return null; // a hole: wait for the snapshot or end
        const fresh = Array.from(event.text).slice(reply.length - event.offset).join("");
        reply.text += fresh;
        reply.length += size - (reply.length - event.offset);
        return reply;
      }
      case "message.snapshot": {
        const reply = this.#ensure(event);
        if (reply.state !== "streaming" || event.offset < reply.length) return null;
        this.#setText(reply, event.text);
        return reply;
      }
      case "message.completed":
      case "message.failed": {
        const reply = this.#ensure(event);
        this.#setText(reply, event.text ?? reply.text);
        reply.state = event.type === "message.failed" ? "failed" : event.finish_reason === "cancelled" ? "cancelled" : "completed";
        reply.finish_reason = event.finish_reason ?? null;
        reply.error = event.error ?? null;
        reply.usage = event.usage ?? null;
        return reply;
      }
      default:
        return null;
    }
  }

  #ensure(event) {
    let reply = this.replies.get(event.message_id);
    if (!reply) {
      // A delta for a reply whose start we have not seen (joined without history).
      reply = { id: event.message_id, room: event.room, sender: event.sender ?? null,
        text: "", length: 0, state: "streaming" };
      this.replies.set(event.message_id, reply);
    }
    return reply;
  }

  #setText(reply, text) {
    reply.text = text;
    reply.length = codePoints(text);
  }
}

/** A Storage-like object kept in memory (Node, or a browser without sessionStorage). */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

function defaultStorage() {
  try {
    if (globalThis.sessionStorage) return globalThis.sessionStorage;
  } catch {
    // sessionStorage throws in some sandboxed frames
  }
  return new MemoryStorage();
}

function randomId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/**
 * A connection to a Nexus gateway that survives network failures.
 *
 * Options:
 * - `url`: the WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`.
 * - `token`: a JWT string, or a function `({reason}) => string | Promise<string>` called
 *   before every connection (`reason`: `connect`, `expired` after close 4003,
 *   `unauthorized` after close 4501; the client stops if it returns the same token
 *   after `unauthorized`).
 * - `storage`: where resume positions are kept (default `sessionStorage`).
 * - `backoff`: `{base, max}` in ms (default 500, 30000). `pingInterval` (15000) and
 *   `pingTimeout` (10000) in ms: the watchdog. `requestTimeout` (15000 ms).
 * - `WebSocket`, `setTimeout`, `clearTimeout`, `random`, `network` (an EventTarget with
 *   `online`/`offline` events, default `window`): injected in tests.
 *
 * Events (`on(type, fn)` returns an unsubscribe function): `state` ({state, previous}),
 * `open` (the `auth.ok` event), `event` (every server event, after de-duplication), each
 * server event type (`message`, `presence`, `typing`, ...), `reply` (a streamed reply
 * changed: see ReplyStreams), `error` (an `error` not tied to a request), `closed`
 * ({code, reason}: the client stopped for good), `outbox` (the outbox size changed).
 */
export class NexusClient {
  constructor(options) {
    const o = options ?? {};
    if (!o.url) throw new TypeError("NexusClient: url is required");
    if (!o.token) throw new TypeError("NexusClient: token is required");
    this.url = o.url;
    this.tokenSource = o.token;
    this.storage = o.storage ?? defaultStorage();
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this.setTimeout = o.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this.clearTimeout = o.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    this.random = o.random ?? Math.random;
    this.backoff = { base: 500, max: 30000, ...(o.backoff ?? {}) };
    this.pingInterval = o.pingInterval ?? 15000;
    this.pingTimeout = o.pingTimeout ?? 10000;
    this.requestTimeout = o.requestTimeout ?? 15000;
    this.network = o.network === undefined ? (globalThis.window ?? null) : o.network;

    this.state = State.IDLE;
    this.session = null; // the auth.ok event of the current connection
    this.replies = new ReplyStreams();
    this.rooms = new Set(); // rooms to be in: rejoined after every reconnect
    this.outbox = new Map(); // client_msg_id -> {frame, resolve, reject}
    this.lastClose = null;

    this._listeners = new Map();
    this._ws = null;
    this._opening = false;
    this._attempt = 0;
    this._nextId = 1;
    this._pending = new Map(); // request id -> {resolve, reject, timer}
    this._retryTimer = null;
    this._pingTimer = null;
    this._watchdog = null;
    this._token = null;
    this._tokenReason = "connect";
    this._positions = null;
    this._onOnline = () => this._wake();
    this._onOffline = () => this._drop(4000, "network offline");
  }

  // ---- events

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type)?.delete(fn);
  }

  _emit(type, value) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(value);
      } catch (err) {
        // A listener's bug must not break the connection: report it and go on.
        console.error(`nexus: a '${type}' listener threw`, err);
      }
    }
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  // ---- lifecycle

  /** Open the connection; resolves with `auth.ok` the first time the client is open. */
  connect() {
    if (this.state === State.CLOSED) throw new NexusError("closed", "client is closed");
    const ready = new Promise((resolve, reject) => {
      if (this.state === State.OPEN) return resolve(this.session);
      const offOpen = this.on("open", (ok) => { offOpen(); offClosed(); resolve(ok); });
      const offClosed = this.on("closed", (c) => {
        offOpen(); offClosed();
        reject(new NexusError(c.error?.code ?? "closed", c.error?.message || c.reason || `closed (${c.code})`,
          { closeCode: c.code }));
      });
    });
    if (this.state === State.IDLE) {
      if (this.network?.addEventListener) {
        this.network.addEventListener("online", this._onOnline);
        this.network.addEventListener("offline", this._onOffline);
      }
      this._open();
    }
    return ready;
  }

  /** Close for good: no reconnect; pending requests and the outbox are rejected. */
  close(code = 1000, reason = "client closed") {
    if (this.state === State.CLOSED) return;
    this._stop({ code, reason });
  }

  async _open() {
    if (this._opening) return; // the token hook of an earlier attempt is still running
    this._opening = true;
    this._setState(this._attempt === 0 && !this.session ? State.CONNECTING : State.RECONNECTING);
    let token;
    try {
      token = typeof this.tokenSource === "function"
        ? await this.tokenSource({ reason: this._tokenReason })
        : this.tokenSource;
    } catch (err) {
      this._opening = false;
      this._emit("error", new NexusError("unauthorized", `token hook failed: ${err?.message ?? err}`));
      this._scheduleRetry();
      return;
    }
    this._opening = false;
    if (this.state === State.CLOSED) return;
    if (this._tokenReason === "unauthorized" && token === this._token) {
      this._stop({ code: 4501, reason: "token refused and the token hook gave no new one" });
      return;
    }
    this._token = token;
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (err) {
      this._emit("error", new NexusError("disconnected", `cannot connect: ${err?.message ?? err}`));
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    this._armWatchdog(); // also bounds the handshake and the wait for auth.ok
    ws.onopen = () => {
      this._send({ type: "auth", id: this._id(), token });
      this._armWatchdog();
    };
    ws.onmessage = (msg) => this._receive(ws, msg.data);
    ws.onerror = () => {}; // a close event follows; it carries what we need
    ws.onclose = (ev) => {
      if (ws === this._ws) this._closed(ev.code, ev.reason);
    };
  }

  _detach() {
    const ws = this._ws;
    this._ws = null;
    this.session = null;
    this.clearTimeout(this._pingTimer);
    this.clearTimeout(this._watchdog);
    this._pingTimer = this._watchdog = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    return ws;
  }

  /** Give up on the current socket (offline, watchdog) without waiting for its close. */
  _drop(code, reason) {
    if (!this._ws) return;
    const ws = this._detach();
    try {
      ws.close(code, reason);
    } catch {
      // a socket still connecting may refuse; it is detached anyway
    }
    this._closed(code, reason);
  }

  _closed(code, reason) {
    this._detach();
    this.lastClose = { code, reason };
    this._failPending(new NexusError("disconnected", `connection closed (${code})`));
    if (this.state === State.CLOSED) return;
    const action = closeAction(code);
    if (action === "stop" && !(code === 4501 && typeof this.tokenSource === "function")) {
      this._stop({ code, reason, error: this._authError });
      return;
    }
    this._tokenReason = action === "refresh" ? "expired" : code === 4501 ? "unauthorized" : "connect";
    this._scheduleRetry();
  }

  _offline() {
    // Only trusted when we listen for `online` too (a browser window): then waiting for
    // that event is better than spending backoff attempts on a network known to be down.
    return Boolean(this.network?.addEventListener) && globalThis.navigator?.onLine === false;
  }

  _scheduleRetry() {
    if (this.state === State.CLOSED) return;
    this._setState(State.RECONNECTING);
    let delay;
    if (this._offline()) {
      delay = this.backoff.max; // a fallback only: the `online` event comes first
    } else {
      delay = backoffDelay(this._attempt, { ...this.backoff, random: this.random });
      this._attempt += 1;
    }
    this.clearTimeout(this._retryTimer);
    this._retryTimer = this.setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  /** The network came back: retry now instead of at the end of the backoff. */
  _wake() {
    if (this.state !== State.RECONNECTING && this.state !== State.CONNECTING) return;
    this._attempt = 0;
    if (this._ws && !this.session) {
      // An attempt made while the network was down: do not wait for it to fail.
      const ws = this._detach();
      try {
        ws.close(4000, "network back");
      } catch {
        // still connecting: detached anyway
      }
    }
    if (this._ws) return;
    this.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  _stop(info) {
    const ws = this._detach();
    this.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (ws) {
      try {
        ws.close(info.code >= 3000 || info.code === 1000 ? info.code : 1000, info.reason);
      } catch {
        // already closing
      }
    }
    if (this.network?.removeEventListener) {
      this.network.removeEventListener("online", this._onOnline);
      this.network.removeEventListener("offline", this._onOffline);
    }
    this._setState(State.CLOSED);
    const err = new NexusError("closed", info.reason || `closed (${info.code})`, { closeCode: info.code });
    this._failPending(err);
    for (const item of this.outbox.values()) item.reject(err);
    this.outbox.clear();
    this._emit("outbox", 0);
    this._emit("closed", info);
  }

  // ---- watchdog

  _armWatchdog() {
    // Any frame from the server counts as life; after `pingInterval` of silence we ask
    // with a ping, and after `pingTimeout` more the socket is presumed dead.
    this.clearTimeout(this._pingTimer);
    this.clearTimeout(this._watchdog);
    this._watchdog = null;
    this._pingTimer = this.setTimeout(() => {
      this._pingTimer = null;
      if (this.session) this._send({ type: "ping", id: this._id() });
      this._watchdog = this.setTimeout(
        () => this._drop(4000, "no answer to ping"), this.pingTimeout);
    }, this.pingInterval);
  }

  // ---- frames in

  _receive(ws, data) {
    if (ws !== this._ws) return;
    this._armWatchdog();
    let event;
    try {
      event = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this._emit("error", new NexusError("bad_request", "server sent a frame that is not JSON"));
      return;
    }
    if (!event || typeof event !== "object") return;
    if (event.type === "auth.ok") {
      this._authenticated(event);
      return;
    }
    if (event.type === "error" && event.code === "unauthorized" && !this.session) {
      this._authError = { code: event.code, message: event.message };
    }
    // Answers to our requests carry our id; broadcast entries carry an entry id instead.
    if (ANSWERS.has(event.type) && event.id !== null && this._pending.has(event.id)) {
      const waiter = this._pending.get(event.id);
      this._pending.delete(event.id);
      this.clearTimeout(waiter.timer);
      if (event.type === "error") {
        waiter.reject(new NexusError(event.code, event.message, { retry_after_ms: event.retry_after_ms }));
      } else {
        waiter.resolve(event);
      }
      if (event.type !== "room.joined") return; // joined also feeds positions, below
    } else if (event.type === "error") {
      this._emit("error", new NexusError(event.code, event.message));
      return;
    }
    if (event.type === "room.joined") {
      this._joined(event);
      return;
    }
    if (typeof event.seq === "number" && typeof event.room === "string" && !ANSWERS.has(event.type)) {
      const last = this.position(event.room);
      if (last !== null && event.seq <= last) return; // seen before the reconnect
      this._setPosition(event.room, event.seq);
    }
    const reply = this.replies.apply(event);
    this._emit("event", event);
    this._emit(event.type, event);
    if (reply) this._emit("reply", reply);
  }

  _authenticated(ok) {
    this.session = ok;
    this._attempt = 0;
    this._tokenReason = "connect";
    this._authError = null;
    this._positions = null; // per user: read again for this user and tenant
    this._setState(State.OPEN);
    this._emit("open", ok);
    const joins = [...this.rooms].map((room) => this.join(room).catch((err) => {
      this._emit("error", new NexusError(err.code ?? "internal", `rejoining ${room}: ${err.message}`));
    }));
    // The outbox goes after the joins: a send needs its room joined on this connection.
    Promise.all(joins).then(() => this._flushOutbox());
  }

  _joined(event) {
    const last = this.position(event.room);
    // No position yet, or the server's log is behind ours (a wiped data dir): start
    // from where the server is, else new entries would be taken for repeats.
    if (last === null || event.seq < last) this._setPosition(event.room, event.seq);
    this._emit("event", event);
    this._emit("room.joined", event);
  }

  // ---- positions (resume by seq)

  _storageKey() {
    const who = this.session ? `${this.session.tenant}/${this.session.user_id}` : "anonymous";
    return `nexus.positions.${who}`;
  }

  _loadPositions() {
    if (this._positions) return this._positions;
    try {
      this._positions = JSON.parse(this.storage.getItem(this._storageKey()) ?? "{}") ?? {};
    } catch {
      this._positions = {};
    }
    return this._positions;
  }

  /** The last seq seen in `room` (kept across reloads of the page), or null. */
  position(room) {
    const value = this._loadPositions()[room];
    return typeof value === "number" ? value : null;
  }

  _setPosition(room, seq) {
    const positions = this._loadPositions();
    positions[room] = seq;
    try {
      this.storage.setItem(this._storageKey(), JSON.stringify(positions));
    } catch {
      // storage full or disabled: positions stay in memory for this page
    }
  }

  // ---- frames out

  _id() {
    return this._nextId++;
  }

  _send(frame) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  _failPending(err) {
    for (const waiter of this._pending.values()) {
      this.clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this._pending.clear();
  }

  /**
   * Send one request and wait for its answer. Only while open: otherwise it rejects with
   * `disconnected` at once (use the outbox methods for writes that must not be lost).
   */
  request(type, fields = {}) {
    if (this.state !== State.OPEN || !this.session) {
      return Promise.reject(new NexusError("disconnected", "not connected"));
    }
    const id = this._id();
    return new Promise((resolve, reject) => {
      const timer = this.setTimeout(() => {
        this._pending.delete(id);
        reject(new NexusError("timeout", `${type}: no answer within ${this.requestTimeout} ms`));
      }, this.requestTimeout);
      this._pending.set(id, { resolve, reject, timer });
      this._send({ ...fields, type, id });
    });
  }

  /** Join `room` (again after every reconnect, with `since` = the last seq seen). */
  join(room) {
    this.rooms.add(room);
    const since = this.position(room);
    return this.request("room.join", since === null ? { room } : { room, since });
  }

  leave(room) {
    this.rooms.delete(room);
    return this.request("room.leave", { room });
  }

  /** Send a message through the outbox; resolves with the `ack`. */
  send(room, body, { reply_to, meta, client_msg_id } = {}) {
    const frame = { type: "message.send", room, body };
    if (reply_to) frame.reply_to = reply_to;
    if (meta) frame.meta = meta;
    return this._enqueue(frame, client_msg_id);
  }

  edit(room, message_id, body, { client_msg_id } = {}) {
    return this._enqueue({ type: "message.edit", room, message_id, body }, client_msg_id);
  }

  delete(room, message_id, { client_msg_id } = {}) {
    return this._enqueue({ type: "message.delete", room, message_id }, client_msg_id);
  }

  typing(room, active = true) {
    this._send({ type: "typing", room, active });
  }

  history(room, { before, after, limit } = {}) {
    const fields = { room };
    if (before !== undefined) fields.before = before;
    if (after !== undefined) fields.after = after;
    if (limit !== undefined) fields.limit = limit;
    return this.request("history", fields);
  }

  cancel(room, message_id) {
    return this.request("message.cancel", { room, message_id });
  }

  _enqueue(frame, key) {
    if (this.state === State.CLOSED) return Promise.reject(new NexusError("closed", "client is closed"));
    const client_msg_id = key ?? `c-${randomId()}`;
    return new Promise((resolve, reject) => {
      this.outbox.set(client_msg_id, { frame: { ...frame, client_msg_id }, resolve, reject });
      this._emit("outbox", this.outbox.size);
      // Sent now when open (the server answers `forbidden` for a room not joined);
      // otherwise after the next `auth.ok` and rejoin.
      if (this.state === State.OPEN && this.session) this._deliver(client_msg_id);
    });
  }

  _flushOutbox() {
    for (const key of [...this.outbox.keys()]) this._deliver(key);
  }

  _deliver(key) {
    const item = this.outbox.get(key);
    if (!item || item.inFlight) return;
    item.inFlight = true;
    this.request(item.frame.type, item.frame).then(
      (ack) => {
        this.outbox.delete(key);
        this._emit("outbox", this.outbox.size);
        item.resolve(ack);
      },
      (err) => {
        item.inFlight = false;
        if (err.code === "disconnected" || err.code === "timeout") {
          return; // kept: sent again (same client_msg_id) once the client is open again
        }
        if (err.code === "rate_limited") {
          this.setTimeout(() => this._deliver(key), err.retry_after_ms ?? 1000);
          return;
        }
        this.outbox.delete(key);
        this._emit("outbox", this.outbox.size);
        item.reject(err);
      },
    );
  }
}
