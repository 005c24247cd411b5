// Unit tests of nexus.js with Node's test runner: a fake WebSocket and a fake clock, no
// sockets, no sleeps. Run: node --test clients/js/test/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MemoryStorage,
  NexusClient,
  ReplyStreams,
  State,
  backoffDelay,
  closeAction,
} from "../nexus.js";

// ---- doubles

/** Timers driven by hand: advance(ms) runs what falls due, in time order. */
class Clock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.next = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.next++;
      this.timers.set(id, { at: this.now + ms, fn });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
  }
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at);
      if (due.length === 0) break;
      const [id, t] = due[0];
      this.timers.delete(id);
      this.now = t.at;
      t.fn();
      await settle();
    }
    this.now = end;
  }
}

/** Lets promise callbacks (the token hook, then-chains) run. */
const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function fakeSocketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    // server side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    deliver(event) {
      this.onmessage?.({ data: JSON.stringify(event) });
    }
    drop(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    last(type) {
      return [...this.sent].reverse().find((f) => f.type === type);
    }
  }
  return { FakeSocket, sockets };
}

function setup(options = {}) {
  const clock = new Clock();
  const { FakeSocket, sockets } = fakeSocketClass();
  const storage = options.storage ?? new MemoryStorage();
  const client = new NexusClient({
    url: "ws://nexus.test/ws",
    token: "tok-1",
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    storage,
    network: null,
    ...options,
  });
  const states = [];
  client.on("state", (s) => states.push(s.state));
  return { client, clock, sockets, storage, states };
}

const OK = { type: "auth.ok", user_id: "ada", tenant: "acme", session_id: "s1", kind: "human", roles: ["member"] };

/** Open the newest socket and authenticate it. */
async function accept(sockets) {
  await settle();
  const ws = sockets.at(-1);
  ws.open();
  const auth = ws.last("auth");
  ws.deliver({ ...OK, id: auth.id });
  await settle();
  return ws;
}

function answerJoin(ws, room, seq) {
  const join = [...ws.sent].reverse().find((f) => f.type === "room.join" && f.room === room);
  ws.deliver({ type: "room.joined", id: join.id, room, seq, first_seq: seq ? 1 : 0, members: [], members_total: 0 });
  return join;
}

const msg = (room, seq, body) => ({ type: "message", room, seq, id: `e${seq}`, sender: "bob", sender_kind: "human", ts: 1, body, reply_to: null, meta: null });

// ---- pure functions

test("backoff grows exponentially, is capped, and is jittered within [cap/2, cap]", () => {
  const opts = { base: 500, max: 30000 };
  assert.equal(backoffDelay(0, { ...opts, random: () => 0 }), 250);
  assert.equal(backoffDelay(0, { ...opts, random: () => 1 }), 500);
  assert.equal(backoffDelay(3, { ...opts, random: () => 0 }), 2000);
  assert.equal(backoffDelay(3, { ...opts, random: () => 1 }), 4000);
  assert.equal(backoffDelay(20, { ...opts, random: () => 1 }), 30000);
  assert.equal(backoffDelay(1000, { ...opts, random: () => 0 }), 15000);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4, opts)));
  assert.ok(spread.size > 40, "jitter spreads reconnects");
});

test("close codes: 4000-4499 reconnect, 4500-4999 stop, 4003 refreshes the token", () => {
  for (const code of [4000, 4001, 4002, 4004, 4499, 1001, 1006, 1011, 1000]) {
    assert.equal(closeAction(code), "reconnect", String(code));
  }
  for (const code of [4500, 4501, 4502, 4999, 1002, 1007, 1009]) {
    assert.equal(closeAction(code), "stop", String(code));
  }
  assert.equal(closeAction(4003), "refresh");
});

// ---- state machine

test("connect authenticates with the first frame and goes idle -> connecting -> open", async () => {
  const { client, sockets, states } = setup();
  assert.equal(client.state, State.IDLE);
  const ready = client.connect();
  await settle();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, "ws://nexus.test/ws");
  const ws = await accept(sockets);
  assert.equal(ws.sent[0].type, "auth");
  assert.equal(ws.sent[0].token, "tok-1");
  const ok = await ready;
  assert.equal(ok.user_id, "ada");
  assert.deepEqual(states, ["connecting", "open"]);
});

test("a dropped connection reconnects after a jittered delay and rejoins with since", async () => {
  const { client, clock, sockets, states } = setup();
  client.connect();
  let ws = await accept(sockets);
  const joined = client.join("general");
  answerJoin(ws, "general", 3);
  assert.equal((await joined).seq, 3);
  ws.deliver(msg("general", 4, "four"));
  ws.deliver(msg("general", 5, "five"));
  assert.equal(client.position("general"), 5);

  ws.drop(1006);
  assert.equal(client.state, State.RECONNECTING);
  await clock.advance(374); // backoff(0) with random 0.5 = 375 ms
  assert.equal(sockets.length, 1, "no reconnect before the backoff");
  await clock.advance(1);
  assert.equal(sockets.length, 2);
  ws = await accept(sockets);
  const join = ws.last("room.join");
  assert.deepEqual({ room: join.room, since: join.since }, { room: "general", since: 5 });
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);
});

test("replayed entries already seen are dropped; new ones are delivered in order", async () => {
  const { client, clock, sockets } = setup();
  const bodies = [];
  client.on("message", (m) => bodies.push(m.body));
  client.connect();
  let ws = await accept(sockets);
  client.join("r");
  answerJoin(ws, "r", 0);
  ws.deliver(msg("r", 1, "a"));
  ws.deliver(msg("r", 2, "b"));
  ws.drop(1001);
  await clock.advance(1000);
  ws = await accept(sockets);
  assert.equal(ws.last("room.join").since, 2);
  answerJoin(ws, "r", 4);
  ws.deliver(msg("r", 2, "b")); // overlap: seen already
  ws.deliver(msg("r", 3, "c"));
  ws.deliver(msg("r", 4, "d"));
  assert.deepEqual(bodies, ["a", "b", "c", "d"]);
});

test("positions are kept in storage per user and survive a new client (page reload)", async () => {
  const storage = new MemoryStorage();
  const first = setup({ storage });
  first.client.connect();
  let ws = await accept(first.sockets);
  first.client.join("general");
  answerJoin(ws, "general", 7);
  ws.deliver(msg("general", 8, "x"));
  first.client.close();

  const second = setup({ storage });
  second.client.connect();
  ws = await accept(second.sockets);
  second.client.join("general");
  assert.equal(ws.last("room.join").since, 8);
  assert.ok(storage.getItem("nexus.positions.acme/ada").includes('"general":8'));
});

test("a server log behind the stored position resets it (wiped data), so new entries show", async () => {
  const storage = new MemoryStorage();
  storage.setItem("nexus.positions.acme/ada", JSON.stringify({ general: 50 }));
  const { client, sockets } = setup({ storage });
  const seen = [];
  client.on("message", (m) => seen.push(m.seq));
  client.connect();
  const ws = await accept(sockets);
  client.join("general");
  answerJoin(ws, "general", 2);
  ws.deliver(msg("general", 3, "new"));
  assert.deepEqual(seen, [3]);
});

test("4501 and 4502 stop for good; connect() rejects with the server's reason", async () => {
  for (const code of [4501, 4502]) {
    const { client, clock, sockets } = setup();
    const ready = client.connect();
    await settle();
    const ws = sockets[0];
    ws.open();
    if (code === 4501) ws.deliver({ type: "error", id: 1, code: "unauthorized", message: "bad signature" });
    ws.drop(code, "nope");
    await assert.rejects(ready, (err) => err.code === (code === 4501 ? "unauthorized" : "closed"));
    assert.equal(client.state, State.CLOSED);
    await clock.advance(120000);
    assert.equal(sockets.length, 1, "no reconnect");
    assert.equal(client.lastClose.code, code);
  }
});

test("4003 (token expired) calls the token hook with reason 'expired' and reconnects", async () => {
  const reasons = [];
  let n = 0;
  const { client, clock, sockets } = setup({
    token: async ({ reason }) => {
      reasons.push(reason);
      n += 1;
      return `tok-${n}`;
    },
  });
  client.connect();
  let ws = await accept(sockets);
  assert.equal(ws.sent[0].token, "tok-1");
  ws.deliver({ type: "error", id: null, code: "unauthorized", message: "token expired" });
  ws.drop(4003, "token expired");
  await clock.advance(1000);
  ws = await accept(sockets);
  assert.equal(ws.sent[0].token, "tok-2");
  assert.deepEqual(reasons, ["connect", "expired"]);
  assert.equal(client.state, State.OPEN);
});

test("4501 with a token hook retries once with a new token, and stops if it gives the same", async () => {
  const { client, clock, sockets } = setup({ token: async () => "same" });
  const closed = [];
  client.on("closed", (c) => closed.push(c.code));
  client.connect().catch(() => {});
  await settle();
  sockets[0].open();
  sockets[0].drop(4501, "bad signature");
  await clock.advance(1000);
  assert.equal(sockets.length, 1, "the same token is not tried again");
  assert.deepEqual(closed, [4501]);
});

test("outbox: sends made while disconnected go out after the rejoin, keyed by client_msg_id", async () => {
  const { client, clock, sockets } = setup();
  const sizes = [];
  client.on("outbox", (n) => sizes.push(n));
  client.connect();
  let ws = await accept(sockets);
  client.join("general");
  answerJoin(ws, "general", 0);
  ws.drop(1006);

  const acked = client.send("general", "written offline", { client_msg_id: "c-1" });
  const edited = client.edit("general", "e1", "changed");
  assert.equal(client.outbox.size, 2);
  await clock.advance(1000);
  ws = await accept(sockets);
  assert.equal(ws.sent.filter((f) => f.type === "message.send").length, 0, "not before the join answer");
  answerJoin(ws, "general", 0);
  await settle();
  const send = ws.last("message.send");
  const edit = ws.last("message.edit");
  assert.equal(send.client_msg_id, "c-1");
  assert.equal(send.body, "written offline");
  assert.ok(edit.client_msg_id.startsWith("c-"));
  const sentOrder = ws.sent.map((f) => f.type);
  assert.ok(sentOrder.indexOf("room.join") < sentOrder.indexOf("message.send"));
  ws.deliver({ type: "ack", id: send.id, room: "general", seq: 1, message_id: "m1", client_msg_id: "c-1", duplicate: false });
  ws.deliver({ type: "ack", id: edit.id, room: "general", seq: 2, message_id: "m2", client_msg_id: edit.client_msg_id, duplicate: false });
  assert.equal((await acked).message_id, "m1");
  assert.equal((await edited).seq, 2);
  assert.equal(client.outbox.size, 0);
  assert.equal(sizes.at(-1), 0);
});

test("outbox: a send whose ack was lost is sent again with the same key; duplicate ack resolves", async () => {
  const { client, clock, sockets } = setup();
  client.connect();
  let ws = await accept(sockets);
  client.join("general");
  answerJoin(ws, "general", 0);
  const acked = client.send("general", "hello");
  await settle();
  const first = ws.last("message.send");
  ws.drop(1006); // before the ack
  await clock.advance(1000);
  ws = await accept(sockets);
  answerJoin(ws, "general", 1);
  await settle();
  const again = ws.last("message.send");
  assert.equal(again.client_msg_id, first.client_msg_id);
  ws.deliver({ type: "ack", id: again.id, room: "general", seq: 1, message_id: "m1", client_msg_id: again.client_msg_id, duplicate: true });
  assert.equal((await acked).duplicate, true);
});

test("outbox: a refused write is rejected and removed; rate_limited is retried after retry_after_ms", async () => {
  const { client, clock, sockets } = setup();
  client.connect();
  const ws = await accept(sockets);
  client.join("general");
  answerJoin(ws, "general", 0);
  const tooBig = client.send("general", "x");
  await settle();
  let frame = ws.last("message.send");
  ws.deliver({ type: "error", id: frame.id, code: "too_large", message: "body too large" });
  await assert.rejects(tooBig, (err) => err.code === "too_large");
  assert.equal(client.outbox.size, 0);

  const limited = client.send("general", "y");
  await settle();
  frame = ws.last("message.send");
  ws.deliver({ type: "error", id: frame.id, code: "rate_limited", message: "slow down", retry_after_ms: 200 });
  await settle();
  assert.equal(client.outbox.size, 1);
  const before = ws.sent.length;
  await clock.advance(200);
  assert.equal(ws.sent.length, before + 1);
  const retry = ws.last("message.send");
  assert.equal(retry.client_msg_id, frame.client_msg_id);
  ws.deliver({ type: "ack", id: retry.id, room: "general", seq: 1, message_id: "m", client_msg_id: retry.client_msg_id, duplicate: false });
  assert.equal((await limited).seq, 1);
});

test("requests while disconnected reject at once; pending ones reject when the socket drops", async () => {
  const { client, sockets } = setup();
  await assert.rejects(client.request("ping"), (err) => err.code === "disconnected");
  client.connect();
  const ws = await accept(sockets);
  const page = client.history("general", { limit: 5 });
  assert.deepEqual(
    (({ type, room, limit }) => ({ type, room, limit }))(ws.last("history")),
    { type: "history", room: "general", limit: 5 },
  );
  ws.drop(1006);
  await assert.rejects(page, (err) => err.code === "disconnected");
});

test("ping watchdog: a quiet socket is pinged, and one that stays silent is replaced", async () => {
  const { client, clock, sockets } = setup({ pingInterval: 1000, pingTimeout: 500 });
  client.connect();
  let ws = await accept(sockets);
  await clock.advance(1000);
  const ping = ws.last("ping");
  assert.ok(ping, "pinged after the interval");
  ws.deliver({ type: "pong", id: ping.id, ts: 1 }); // alive: the timeout is cleared
  await clock.advance(1400);
  assert.equal(client.state, State.OPEN);
  assert.equal(sockets.length, 1);
  // the second ping went out at 2000; at 2500, after 500 ms of silence, the socket is dead
  await clock.advance(100);
  assert.equal(ws.closedWith?.code, 4000, "the dead socket is closed");
  assert.equal(client.state, State.RECONNECTING);
  await clock.advance(375);
  assert.equal(sockets.length, 2);
  ws = await accept(sockets);
  assert.equal(client.state, State.OPEN);
});

test("offline/online events drop the socket at once and reconnect without waiting", async () => {
  const network = new EventTarget();
  const { client, sockets } = setup({ network });
  client.connect();
  await accept(sockets);
  network.dispatchEvent(new Event("offline"));
  assert.equal(client.state, State.RECONNECTING);
  assert.equal(sockets[0].closedWith.code, 4000);
  network.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(sockets.length, 2, "reconnects on online");
  await accept(sockets);
  assert.equal(client.state, State.OPEN);
});

test("while the browser says offline, retries wait for 'online' instead of backing off", async () => {
  const network = new EventTarget();
  const saved = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { onLine: false }, configurable: true });
  try {
    const { client, clock, sockets } = setup({ network });
    client.connect();
    await accept(sockets);
    network.dispatchEvent(new Event("offline"));
    await clock.advance(20000);
    assert.equal(sockets.length, 1, "no attempts while offline");
    assert.equal(client._attempt, 0);
    // an attempt in flight when the network returns is replaced at once
    await clock.advance(10000); // the fallback timer (backoff.max) fires once
    assert.equal(sockets.length, 2);
    globalThis.navigator.onLine = true;
    network.dispatchEvent(new Event("online"));
    await settle();
    assert.equal(sockets.length, 3);
    assert.equal(sockets[1].closedWith.code, 4000);
    await accept(sockets);
    assert.equal(client.state, State.OPEN);
  } finally {
    if (saved) Object.defineProperty(globalThis, "navigator", saved);
    else delete globalThis.navigator;
  }
});

test("'online' while the token hook is still running does not open a second socket", async () => {
  const network = new EventTarget();
  let release;
  let calls = 0;
  const { client, sockets } = setup({
    network,
    token: () => {
      calls += 1;
      return calls === 1 ? "tok-1" : new Promise((resolve) => { release = resolve; });
    },
  });
  client.connect();
  await accept(sockets);
  sockets[0].drop(1006);
  network.dispatchEvent(new Event("online")); // retry now: the hook is called and waits
  await settle();
  network.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(calls, 2);
  release("tok-2");
  await settle();
  assert.equal(sockets.length, 2);
  const ws = await accept(sockets);
  assert.equal(ws.sent[0].token, "tok-2");
});

test("close() stops for good and rejects the outbox", async () => {
  const { client, clock, sockets } = setup();
  client.connect();
  await accept(sockets);
  client.rooms.add("general");
  sockets[0].drop(1006);
  const pending = client.send("general", "never");
  client.close();
  await assert.rejects(pending, (err) => err.code === "closed");
  await clock.advance(60000);
  assert.equal(sockets.length, 1);
  assert.equal(client.state, State.CLOSED);
});

test("a listener that throws does not break delivery to the others", async () => {
  const { client, sockets } = setup();
  const seen = [];
  const orig = console.error;
  console.error = () => {};
  try {
    client.on("message", () => {
      throw new Error("listener bug");
    });
    client.on("message", (m) => seen.push(m.seq));
    client.connect();
    const ws = await accept(sockets);
    client.join("r");
    answerJoin(ws, "r", 0);
    ws.deliver(msg("r", 1, "a"));
  } finally {
    console.error = orig;
  }
  assert.deepEqual(seen, [1]);
});

// ---- streamed replies

test("replies: deltas append at their offset, repeats are ignored, completion fixes the text", () => {
  const r = new ReplyStreams();
  r.apply({ type: "message.started", room: "g", seq: 3, id: "m", sender: "helper", state: "streaming" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 0, text: "Hel" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 3, text: "lo " });
  assert.equal(r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 0, text: "Hel" }), null);
  // overlapping: starts before our end and goes past it
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 4, text: "o wo" });
  assert.equal(r.get("m").text, "Hello wo");
  // a hole is not filled with garbage
  assert.equal(r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 20, text: "?" }), null);
  const done = r.apply({ type: "message.completed", room: "g", seq: 4, message_id: "m", text: "Hello world", finish_reason: "stop", usage: { input_tokens: 1, output_tokens: 2 } });
  assert.equal(done.text, "Hello world");
  assert.equal(done.state, "completed");
  assert.equal(r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 11, text: "!" }), null);
});

test("replies: offsets count code points, not UTF-16 units", () => {
  const r = new ReplyStreams();
  r.apply({ type: "message.started", room: "g", id: "m", sender: "h", state: "streaming" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 0, text: "😀a" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 2, text: "b" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 1, text: "ab😀" });
  assert.equal(r.get("m").text, "😀ab😀");
  assert.equal(r.get("m").length, 4);
});

test("replies: a snapshot catches a late joiner up; history records arrive finished", () => {
  const r = new ReplyStreams();
  r.apply({ type: "message.snapshot", room: "g", message_id: "m", sender: "h", offset: 5, text: "Hello" });
  r.apply({ type: "message.delta", room: "g", message_id: "m", offset: 5, text: "!" });
  assert.equal(r.get("m").text, "Hello!");
  const old = r.apply({ type: "message.started", room: "g", seq: 9, id: "h1", sender: "h", state: "completed", text: "from history", finish_reason: "stop" });
  assert.equal(old.text, "from history");
  assert.equal(old.state, "completed");
  const failed = r.apply({ type: "message.failed", room: "g", message_id: "m", text: "Hello!", finish_reason: "interrupted", error: { kind: "interrupted", message: "stopped" } });
  assert.equal(failed.state, "failed");
});

test("client: streamed events update the reply and emit 'reply'", async () => {
  const { client, sockets } = setup();
  const texts = [];
  client.on("reply", (reply) => texts.push(reply.text));
  client.connect();
  const ws = await accept(sockets);
  client.join("g");
  answerJoin(ws, "g", 0);
  ws.deliver({ type: "message.started", room: "g", seq: 1, id: "m", sender: "helper", sender_kind: "agent", state: "streaming" });
  ws.deliver({ type: "message.delta", room: "g", message_id: "m", offset: 0, text: "Hi" });
  ws.deliver({ type: "message.delta", room: "g", message_id: "m", offset: 2, text: " there" });
  ws.deliver({ type: "message.completed", room: "g", seq: 2, id: "c", message_id: "m", text: "Hi there", finish_reason: "stop" });
  assert.deepEqual(texts, ["", "Hi", "Hi there", "Hi there"]);
  assert.equal(client.position("g"), 2);
});
