// The Nexus web app: plain ES modules, no build step. The WebSocket side is nexus.js (the
// JavaScript client); the HTTP API (/v1/...) serves lists, tasks, search and admin views.
// Every failed request is shown to the user (showError); nothing fails silently.
import { NexusClient, NexusError, State } from "./nexus.js";

const TOKEN_KEY = "nexus.token";
const TYPING_SEND_MS = 3000; // send `typing` at most this often while typing
const TYPING_SHOW_MS = 5000; // the server never says "stopped": indicators time out
const METRICS_EVERY_MS = 2000;
const METRICS_POINTS = 60;
const TASK_STATES = ["triage", "backlog", "todo", "in_progress", "done", "cancelled"];

const $ = (id) => document.getElementById(id);

/** Build an element: attributes (on* are listeners), then children (strings are text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function timeOf(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

// ---- alerts

function showError(what, err) {
  notify(`${what}: ${err?.message ?? err}${err?.code ? ` (${err.code})` : ""}`, "alert");
}

function notify(text, kind = "alert info") {
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "×");
  const box = h("div", { class: kind }, h("p", {}, text), close);
  close.addEventListener("click", () => box.remove());
  $("alerts").append(box);
  setTimeout(() => box.remove(), 12000);
}

// ---- HTTP API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: `Bearer ${app.token}` } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", `cannot reach the server (${err.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const e = data?.error;
    throw new ApiError(response.status, e?.code ?? `http_${response.status}`, e?.message ?? (text.slice(0, 200) || response.statusText));
  }
  return data;
}

// ---- state

const app = {
  token: null,
  client: null,
  session: null,
  view: "chat",
  room: null, // the open room
  rooms: new Map(), // name -> {unread, topic}
  entries: new Map(), // room -> Map(message id -> li)
  presence: new Map(), // room -> Map(user -> kind)
  typing: new Map(), // room -> Map(user -> timer)
  tasks: new Map(), // task id -> task (of the open room)
  lastTyping: 0,
  metrics: { timer: null, series: new Map(), previous: null },
};

// ---- sign in / out

function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    // Keep the token out of the address bar, history and bookmarks.
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token;
}

async function signIn(token) {
  app.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  let config;
  try {
    const response = await fetch("config.json");
    if (!response.ok) throw new Error(`config.json answered ${response.status}`);
    config = await response.json();
  } catch (err) {
    showError("Cannot load the app configuration", err);
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.hostname}:${config.ws_port}${config.ws_path}`;
  const client = new NexusClient({ url, token: () => app.token });
  app.client = client;
  window.nexusClient = client; // for debugging from the console (and the browser tests)
  wireClient(client);
  try {
    await client.connect();
  } catch (err) {
    showError("Sign in failed", err);
    signOut(false);
  }
}

function signOut(clearToken = true) {
  const client = app.client;
  app.client = null;
  client?.close(1000, "signed out");
  $("reconnect").hidden = true;
  app.session = null;
  if (clearToken) sessionStorage.removeItem(TOKEN_KEY);
  stopMetrics();
  app.room = null;
  app.rooms.clear();
  app.entries.clear();
  $("room-list").replaceChildren();
  $("messages").replaceChildren();
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("whoami").textContent = "";
  for (const id of ["chat-view", "search-view", "admin-view"]) $(id).hidden = true;
  $("signin-view").hidden = false;
  setConn(State.IDLE, "Not connected");
}

function setConn(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

function wireClient(client) {
  client.on("state", ({ state }) => {
    const label = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected", idle: "Not connected" };
    setConn(state, label[state] ?? state);
    // Closed for good (forced disconnect, refused token): reconnecting is the user's call.
    $("reconnect").hidden = !(state === State.CLOSED && app.session);
  });
  client.on("open", (ok) => {
    const first = !app.session;
    app.session = ok;
    if (first) onSignedIn(ok);
    else if (app.room) {
      // merges by id: fills in what an open that failed while disconnected missed
      loadHistory(app.room).catch((err) => showError(`Reloading #${app.room}`, err));
    }
  });
  client.on("closed", ({ code, reason }) => {
    // Before the first auth.ok, connect() rejects and signIn reports it once.
    if (code !== 1000 && app.session) showError("Disconnected", new NexusError(String(code), reason || "connection closed"));
  });
  client.on("error", (err) => {
    if (!app.session && err.code === "unauthorized") return; // reported by signIn
    showError("Server", err);
  });
  client.on("outbox", (n) => {
    $("outbox").textContent = n ? `${n} message${n === 1 ? "" : "s"} waiting to be sent` : "";
  });
  client.on("event", onEvent);
  client.on("reply", renderReply);
  client.on("room.joined", (ev) => {
    const present = new Map(ev.members.map((m) => [m.user_id, m.kind]));
    present.set(app.session.user_id, app.session.kind);
    app.presence.set(ev.room, present);
    if (ev.room === app.room) renderPresence();
  });
}

async function onSignedIn(ok) {
  $("signin-view").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  $("whoami").textContent = `${ok.user_id} · ${ok.tenant}${ok.roles.length ? ` · ${ok.roles.join(", ")}` : ""}`;
  const admin = ok.roles.includes("admin");
  document.querySelector('nav [data-view="admin"]').hidden = !admin;
  $("member-form").hidden = !admin;
  showView("chat");
  await loadRooms();
  const first = new URLSearchParams(location.search).get("room") ?? [...app.rooms.keys()][0];
  if (first) openRoom(first);
  else $("room-input").focus();
}

// ---- views

function showView(view) {
  app.view = view;
  for (const name of ["chat", "search", "admin"]) {
    $(`${name}-view`).hidden = name !== view;
    document.querySelector(`nav [data-view="${name}"]`).setAttribute("aria-pressed", String(name === view));
  }
  if (view === "admin") startMetrics();
  else stopMetrics();
  if (view === "admin") loadAdmin();
  if (view === "search") $("search-input").focus();
}

// ---- rooms

async function loadRooms() {
  try {
    let cursor = null;
    do {
      const page = await api("GET", `/v1/rooms?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      for (const room of page.rooms) {
        if (room.archived) continue;
        const known = app.rooms.get(room.name) ?? { unread: 0 };
        app.rooms.set(room.name, { ...known, topic: room.topic });
      }
      cursor = page.next_cursor;
    } while (cursor);
  } catch (err) {
    showError("Loading rooms", err);
  }
  renderRoomList();
}

function renderRoomList() {
  const items = [...app.rooms.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, info]) =>
    h("li", {},
      h("button", {
        type: "button",
        "aria-current": name === app.room ? "true" : "false",
        onclick: () => openRoom(name),
      }, h("span", {}, `# ${name}`), info.unread ? h("span", { class: "badge", "aria-label": `${info.unread} unread` }, info.unread) : null)));
  $("room-list").replaceChildren(...items);
  $("room-list").querySelector('[aria-current="true"]')?.scrollIntoView({ block: "nearest", inline: "nearest" });
}

async function openRoom(name) {
  if (!app.client) return;
  app.room = name;
  const info = app.rooms.get(name) ?? { unread: 0 };
  info.unread = 0;
  app.rooms.set(name, info);
  renderRoomList();
  $("room-title").textContent = `# ${name}`;
  $("room-topic").textContent = info.topic ?? "";
  $("composer").hidden = false;
  $("task-form").hidden = false;
  if (!app.entries.has(name)) app.entries.set(name, new Map());
  $("messages").replaceChildren(...sortedItems(name));
  renderPresence();
  renderTyping();
  try {
    if (!app.client.rooms.has(name)) await app.client.join(name);
    await loadHistory(name);
  } catch (err) {
    showError(`Opening #${name}`, err);
  }
  loadMembers(name);
  loadTasks(name);
  $("composer-input").focus();
}

/** The newest 50 entries of `room`, merged with what is shown (by message id). */
async function loadHistory(room) {
  const page = await app.client.history(room, { limit: 50 });
  for (const entry of page.messages) onEvent(entry, true);
  if (room === app.room) scrollToEnd();
}

function sortedItems(room) {
  return [...app.entries.get(room).values()].sort((a, b) => Number(a.dataset.seq) - Number(b.dataset.seq));
}

// ---- messages

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

/** Insert `li` (keyed by message id) in seq order, or replace the one with that key. */
function place(room, key, li) {
  const items = app.entries.get(room) ?? new Map();
  app.entries.set(room, items);
  const old = items.get(key);
  items.set(key, li);
  if (room !== app.room) return;
  if (old?.isConnected) {
    old.replaceWith(li);
    return;
  }
  const list = $("messages");
  const seq = Number(li.dataset.seq);
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const after = [...list.children].find((el) => Number(el.dataset.seq) > seq);
  list.insertBefore(li, after ?? null);
  if (stick) scrollToEnd();
}

function messageItem(m) {
  const mine = m.sender === app.session.user_id;
  const deleted = Boolean(m.deleted);
  const li = h("li", {
    class: `msg${mine ? " mine" : ""}${m.sender_kind === "agent" ? " agent" : ""}${deleted ? " deleted" : ""}`,
    dataset: { seq: m.seq, id: m.id, sender: m.sender },
  },
  h("div", { class: "meta" },
    h("span", { class: "sender" }, m.sender),
    m.sender_kind !== "human" ? h("span", {}, m.sender_kind) : null,
    h("time", { datetime: new Date(m.ts).toISOString() }, timeOf(m.ts)),
    m.edited && !deleted ? h("span", { class: "edited" }, "(edited)") : null,
    mine && !deleted ? h("span", { class: "actions" },
      h("button", { type: "button", class: "link", "aria-label": `Edit message ${m.seq}`, onclick: () => editMessage(li, m) }, "Edit"),
      h("button", { type: "button", class: "link", "aria-label": `Delete message ${m.seq}`, onclick: () => deleteMessage(m) }, "Delete"),
    ) : null),
  h("p", { class: "body" }, deleted ? "message deleted" : m.body));
  li.record = m;
  return li;
}

function systemItem(room, seq, key, text) {
  place(room, key, h("li", { class: "msg system", dataset: { seq } }, text));
}

function onEvent(ev, fromHistory = false) {
  const room = ev.room;
  if (ev.type === "task.notice") {
    // Sent to the assignees' sessions only, not logged: a reminder or a due time fired.
    notify(`Task ${ev.reason === "due" ? "due" : "reminder"}: “${ev.task?.title ?? "a task"}” in #${room}`);
    return;
  }
  if (!room) return;
  switch (ev.type) {
    case "message":
      place(room, ev.id, messageItem(ev));
      if (!fromHistory) {
        clearTyping(room, ev.sender);
        countUnread(room);
      }
      break;
    case "message.edited":
    case "message.deleted": {
      const li = app.entries.get(room)?.get(ev.target_id);
      if (li?.record && !li.record.deleted) {
        const next = ev.type === "message.edited"
          ? { ...li.record, body: ev.body, edited: ev.ts, edited_by: ev.by }
          : { ...li.record, body: "", deleted: ev.ts, deleted_by: ev.by };
        place(room, ev.target_id, messageItem(next));
      }
      break;
    }
    case "message.started":
      // Live, the client's ReplyStreams emits "reply"; from history we feed it here.
      if (fromHistory) renderReply(app.client.replies.apply(ev));
      if (!fromHistory) countUnread(room);
      break;
    case "tool.call":
      systemItem(room, ev.seq, ev.id, `${ev.sender} called ${ev.name}`);
      break;
    case "tool.result":
      systemItem(room, ev.seq, ev.id, `${ev.name} ${ev.ok ? "answered" : "failed"}`);
      break;
    case "agent.notice":
      systemItem(room, ev.seq, ev.id, ev.message);
      break;
    case "task.created":
    case "task.updated":
      systemItem(room, ev.seq, ev.id, `${ev.sender} ${ev.type === "task.created" ? "created" : "updated"} task “${ev.task.title}”`);
      if (room === app.room) upsertTask(ev.task);
      break;
    case "task.reminder":
      systemItem(room, ev.seq, ev.id ?? `r${ev.seq}`, `Reminder: ${ev.title}`);
      break;
    case "memory.written":
    case "memory.superseded":
    case "memory.forgotten":
      systemItem(room, ev.seq, ev.id, `${ev.sender} ${ev.type.slice(7)} a memory`);
      break;
    case "presence": {
      const present = app.presence.get(room) ?? new Map();
      if (ev.action === "join") present.set(ev.user_id, ev.kind);
      else present.delete(ev.user_id);
      app.presence.set(room, present);
      if (room === app.room) renderPresence();
      break;
    }
    case "typing":
      if (ev.user_id !== app.session.user_id) setTyping(room, ev.user_id, ev.active);
      break;
    default:
      break;
  }
}

function countUnread(room) {
  if (room === app.room && document.visibilityState === "visible") return;
  const info = app.rooms.get(room);
  if (info) {
    info.unread += 1;
    renderRoomList();
  }
}

function renderReply(reply) {
  if (!reply) return;
  const streaming = reply.state === "streaming";
  const li = h("li", {
    class: "msg agent reply",
    dataset: { seq: reply.seq ?? Number.MAX_SAFE_INTEGER, id: reply.id, sender: reply.sender ?? "", state: reply.state },
    "aria-busy": streaming ? "true" : "false",
  },
  h("div", { class: "meta" },
    h("span", { class: "sender" }, reply.sender ?? "agent"),
    h("span", {}, "agent"),
    reply.ts ? h("time", { datetime: new Date(reply.ts).toISOString() }, timeOf(reply.ts)) : null,
    streaming ? h("span", { class: "actions" },
      h("button", { type: "button", class: "link", onclick: () => cancelReply(reply) }, "Stop")) : null,
    reply.state === "failed" ? h("span", { class: "error" }, `failed: ${reply.error?.message ?? reply.finish_reason}`) : null,
    reply.state === "cancelled" ? h("span", {}, "(stopped)") : null),
  h("p", { class: "body" }, reply.text));
  place(reply.room, reply.id, li);
}

async function cancelReply(reply) {
  try {
    await app.client.cancel(reply.room, reply.id);
  } catch (err) {
    showError("Stopping the reply", err);
  }
}

function editMessage(li, m) {
  const input = h("input", { value: m.body, "aria-label": `New text for message ${m.seq}`, required: true, maxlength: 16384 });
  const form = h("form", {},
    input,
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "secondary", onclick: () => li.replaceWith(messageItem(m)) }, "Cancel"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = input.value.trim();
    if (!body || body === m.body) {
      form.remove();
      return;
    }
    try {
      await app.client.edit(m.room, m.id, body);
    } catch (err) {
      showError("Editing the message", err);
    }
  });
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") li.replaceWith(messageItem(m));
  });
  li.querySelector(".body").replaceWith(form);
  input.focus();
  input.select();
}

async function deleteMessage(m) {
  if (!confirm("Delete this message?")) return;
  try {
    await app.client.delete(m.room, m.id);
  } catch (err) {
    showError("Deleting the message", err);
  }
}

async function sendMessage(e) {
  e.preventDefault();
  const input = $("composer-input");
  const body = input.value.trim();
  if (!body || !app.room) return;
  input.value = "";
  app.lastTyping = 0;
  try {
    await app.client.send(app.room, body);
  } catch (err) {
    showError("Sending the message", err);
    if (!input.value) input.value = body; // give the text back
  }
}

// ---- typing and presence

function setTyping(room, user, active) {
  const map = app.typing.get(room) ?? new Map();
  app.typing.set(room, map);
  clearTimeout(map.get(user));
  if (active) map.set(user, setTimeout(() => clearTyping(room, user), TYPING_SHOW_MS));
  else map.delete(user);
  if (room === app.room) renderTyping();
}

function clearTyping(room, user) {
  const map = app.typing.get(room);
  if (!map?.has(user)) return;
  clearTimeout(map.get(user));
  map.delete(user);
  if (room === app.room) renderTyping();
}

function renderTyping() {
  const users = [...(app.typing.get(app.room)?.keys() ?? [])];
  $("typing").textContent = users.length === 0 ? "" : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
}

function renderPresence() {
  const present = app.presence.get(app.room) ?? new Map();
  const items = [...present.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([user, kind]) =>
    h("li", {}, h("span", { "aria-hidden": "true" }, "● "), user, kind !== "human" ? h("span", { class: "kind" }, ` ${kind}`) : null));
  $("presence").replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "nobody")]));
}

async function loadMembers(room) {
  try {
    const page = await api("GET", `/v1/rooms/${encodeURIComponent(room)}/members?limit=100`);
    if (room !== app.room) return;
    const items = page.members.map((m) => h("li", {}, m.user_id, h("span", { class: "kind" }, ` ${m.role}`)));
    $("members").replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "open room: anyone in the tenant may join")]));
  } catch (err) {
    showError(`Loading the members of #${room}`, err);
  }
}

async function addMember(e) {
  e.preventDefault();
  const input = $("member-input");
  const user = input.value.trim();
  if (!user || !app.room) return;
  try {
    await api("PUT", `/v1/rooms/${encodeURIComponent(app.room)}/members/${encodeURIComponent(user)}`, { role: "member" });
    input.value = "";
    loadMembers(app.room);
  } catch (err) {
    showError(`Adding ${user}`, err);
  }
}

// ---- tasks

async function loadTasks(room) {
  try {
    const page = await api("GET", `/v1/tasks?room=${encodeURIComponent(room)}&limit=200`);
    if (room !== app.room) return;
    app.tasks.clear();
    for (const task of page.tasks) app.tasks.set(task.id, task);
    renderTasks();
  } catch (err) {
    showError(`Loading the tasks of #${room}`, err);
  }
}

function upsertTask(task) {
  const known = app.tasks.get(task.id);
  if (known && known.version > task.version) return;
  app.tasks.set(task.id, task);
  renderTasks();
}

function renderTasks() {
  const tasks = [...app.tasks.values()].sort((a, b) => b.created_at - a.created_at);
  const items = tasks.map((task) => {
    const select = h("select", { "aria-label": `State of ${task.title}` },
      ...TASK_STATES.map((s) => h("option", { value: s, selected: s === task.state }, s.replace("_", " "))));
    select.addEventListener("change", () => changeTask(task, select));
    return h("li", { dataset: { task: task.id } },
      h("span", { class: "title" }, task.title),
      task.assignees?.length ? h("span", { class: "help" }, `for ${task.assignees.join(", ")}`) : null,
      select);
  });
  $("tasks").replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "no tasks yet")]));
}

async function changeTask(task, select) {
  try {
    const updated = await api("PATCH", `/v1/tasks/${encodeURIComponent(task.id)}`, { expected_version: task.version, state: select.value });
    upsertTask(updated);
  } catch (err) {
    showError(`Changing “${task.title}”`, err);
    select.value = task.state;
    if (err.status === 409) loadTasks(app.room); // someone else changed it: show theirs
  }
}

async function createTask(e) {
  e.preventDefault();
  const input = $("task-input");
  const title = input.value.trim();
  if (!title || !app.room) return;
  try {
    const task = await api("POST", `/v1/rooms/${encodeURIComponent(app.room)}/tasks`, { title });
    input.value = "";
    upsertTask(task);
  } catch (err) {
    showError("Creating the task", err);
  }
}

// ---- search

/** The snippet's **marked** words as <mark> elements; the rest as text. */
function snippet(text) {
  return text.split("**").map((part, i) => (i % 2 ? h("mark", {}, part) : part));
}

async function search(e) {
  e.preventDefault();
  const q = $("search-input").value.trim();
  const room = $("search-room").value.trim();
  if (!q) return;
  $("search-status").textContent = "Searching…";
  try {
    const params = new URLSearchParams({ q, limit: "50" });
    if (room) params.set("room", room);
    const result = await api("GET", `/v1/search?${params}`);
    $("search-status").textContent = `${result.hits.length} result${result.hits.length === 1 ? "" : "s"} for “${q}”`;
    $("search-results").replaceChildren(...result.hits.map((hit) =>
      h("li", {},
        h("div", { class: "meta" },
          h("button", { type: "button", class: "link", onclick: () => { showView("chat"); openRoom(hit.room); } }, `# ${hit.room}`),
          ` ${hit.sender} · ${timeOf(hit.ts)} · #${hit.seq}`),
        h("p", {}, ...snippet(hit.snippet)))));
  } catch (err) {
    $("search-status").textContent = "";
    showError("Search", err);
  }
}

// ---- admin

async function loadAdmin() {
  const day = new Date().toISOString().slice(0, 10);
  const jobs = [
    ["Server", () => api("GET", "/v1/server"), renderServer],
    ["Connections", () => api("GET", "/v1/admin/connections"), renderConnections],
    ["Rooms", () => api("GET", "/v1/rooms?limit=100"), renderAdminRooms],
    ["Agents", async () => [await api("GET", "/v1/agents"), await api("GET", `/v1/usage?day=${day}`)], renderAgents],
    ["Plugins", () => api("GET", "/v1/plugins"), renderPlugins],
  ];
  await Promise.all(jobs.map(async ([what, load, render]) => {
    try {
      render(await load());
    } catch (err) {
      showError(`Admin: ${what}`, err);
    }
  }));
}

function fillTable(id, rows, empty) {
  const body = $(id).querySelector("tbody");
  const cols = $(id).querySelectorAll("thead th").length;
  body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: cols, class: "empty" }, empty))]));
}

function renderServer(info) {
  const up = Math.round(info.uptime_s);
  $("server-info").textContent = `Nexus ${info.version} · up ${Math.floor(up / 3600)}h ${Math.floor(up / 60) % 60}m · ${info.connections} connections · ${info.rooms_loaded} rooms loaded`;
}

function renderConnections(data) {
  fillTable("connections", data.connections.map((c) => h("tr", { dataset: { session: c.session_id } },
    h("td", {}, h("code", {}, c.session_id)),
    h("td", {}, c.user_id, c.session_id === app.session?.session_id ? " (you)" : ""),
    h("td", {}, c.kind),
    h("td", {}, c.remote),
    h("td", {}, c.rooms.join(", ")),
    h("td", {}, h("button", {
      type: "button", class: "danger", "aria-label": `Disconnect ${c.user_id} (session ${c.session_id})`,
      onclick: () => disconnect(c),
    }, "Disconnect")))), "no live connections");
}

async function disconnect(c) {
  if (!confirm(`Disconnect ${c.user_id} (session ${c.session_id})? The client will not reconnect.`)) return;
  try {
    await api("DELETE", `/v1/admin/connections/${encodeURIComponent(c.session_id)}`);
  } catch (err) {
    showError(`Disconnecting ${c.user_id}`, err);
  }
  try {
    renderConnections(await api("GET", "/v1/admin/connections"));
  } catch (err) {
    showError("Admin: Connections", err);
  }
}

function renderAdminRooms(data) {
  fillTable("admin-rooms", data.rooms.map((r) => h("tr", {},
    h("td", {}, r.name), h("td", {}, r.topic ?? ""), h("td", { class: "num" }, r.seq),
    h("td", { class: "num" }, r.online), h("td", {}, r.private ? "yes" : "no"),
    h("td", {}, r.archived ? new Date(r.archived).toLocaleString() : ""))), "no rooms");
}

function renderAgents([agents, usage]) {
  const totals = new Map();
  for (const row of usage.usage) {
    const t = totals.get(row.agent) ?? { input: 0, output: 0, turns: 0 };
    t.input += row.input_tokens;
    t.output += row.output_tokens;
    t.turns += row.turns;
    totals.set(row.agent, t);
  }
  fillTable("agents", agents.agents.map((a) => {
    const t = totals.get(a.name) ?? { input: 0, output: 0, turns: 0 };
    return h("tr", { dataset: { agent: a.name } },
      h("td", {}, a.name), h("td", {}, a.provider), h("td", {}, a.model),
      h("td", { class: "num" }, a.daily_token_budget || "none"),
      h("td", { class: "num" }, t.input), h("td", { class: "num" }, t.output), h("td", { class: "num" }, t.turns));
  }), "no agents");
}

async function createAgent(e) {
  e.preventDefault();
  const input = $("agent-input");
  const name = input.value.trim();
  if (!name) return;
  try {
    await api("POST", "/v1/agents", { name, provider: "offline" });
    input.value = "";
    const day = new Date().toISOString().slice(0, 10);
    renderAgents([await api("GET", "/v1/agents"), await api("GET", `/v1/usage?day=${day}`)]);
  } catch (err) {
    showError(`Creating agent ${name}`, err);
  }
}

function renderPlugins(data) {
  fillTable("plugins", data.plugins.map((p) => {
    const faults = Object.values(p.faults ?? {}).reduce((a, b) => a + Number(b || 0), 0);
    const state = p.quarantined ? "quarantined" : p.enabled ? "enabled" : "disabled";
    return h("tr", {},
      h("td", {}, p.name), h("td", {}, p.version ?? ""), h("td", {}, state),
      h("td", {}, (p.hooks ?? []).join(", ")), h("td", { class: "num" }, faults), h("td", {}, p.last_error ?? ""));
  }), "no plugins installed");
}

// ---- metrics: /metrics (Prometheus text) sampled every 2 s, drawn as small charts

const CHARTS = [
  { key: "nexus_connections_open", label: "Open connections", kind: "gauge" },
  { key: "nexus_sessions_authenticated", label: "Signed-in sessions", kind: "gauge" },
  { key: "nexus_messages_stored_total", label: "Messages stored /s", kind: "rate" },
  { key: "nexus_messages_delivered_total", label: "Deliveries /s", kind: "rate" },
  { key: "nexus_frames_in_total", label: "Frames in /s", kind: "rate" },
  { key: "nexus_bytes_out_total", label: "Bytes out /s", kind: "rate" },
  { key: "nexus_rate_limited_total", label: "Rate-limited /s", kind: "rate" },
  { key: "nexus_event_loop_lag_seconds", label: "Event loop lag (ms)", kind: "gauge", scale: 1000 },
];

/** Sum of every sample of each metric name (labels summed), from Prometheus text. */
export function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    sums.set(match[1], (sums.get(match[1]) ?? 0) + value);
  }
  return sums;
}

async function sampleMetrics() {
  let text;
  try {
    const response = await fetch("/metrics", { headers: { authorization: `Bearer ${app.token}` } });
    if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, `/metrics answered ${response.status} (with metrics_token set, the charts need that token)`);
    text = await response.text();
  } catch (err) {
    showError("Metrics", err);
    stopMetrics();
    return;
  }
  const now = performance.now();
  const sums = parseMetrics(text);
  const prev = app.metrics.previous;
  for (const chart of CHARTS) {
    const raw = sums.get(chart.key);
    if (raw === undefined) continue;
    let value;
    if (chart.kind === "rate") {
      if (!prev || prev.sums.get(chart.key) === undefined) continue;
      value = Math.max(0, (raw - prev.sums.get(chart.key)) / ((now - prev.at) / 1000));
    } else {
      value = raw * (chart.scale ?? 1);
    }
    const series = app.metrics.series.get(chart.key) ?? [];
    series.push(value);
    if (series.length > METRICS_POINTS) series.shift();
    app.metrics.series.set(chart.key, series);
  }
  app.metrics.previous = { at: now, sums };
  renderCharts();
}

function renderCharts() {
  const svgNS = "http://www.w3.org/2000/svg";
  const figures = CHARTS.map((chart) => {
    const series = app.metrics.series.get(chart.key) ?? [];
    const last = series.at(-1);
    const shown = last === undefined ? "…" : last >= 100 ? Math.round(last).toLocaleString() : last.toFixed(last % 1 ? 2 : 0);
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${METRICS_POINTS - 1} 100`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${chart.label}: ${shown}, last ${series.length} samples`);
    if (series.length > 1) {
      // The samples span the width (newest at the right); y runs from 0 to the maximum.
      const max = Math.max(...series, 1e-9);
      const step = (METRICS_POINTS - 1) / (series.length - 1);
      const points = series.map((v, i) => `${(i * step).toFixed(2)},${(100 - (v / max) * 94 - 3).toFixed(1)}`);
      const area = document.createElementNS(svgNS, "polygon");
      area.setAttribute("class", "area");
      area.setAttribute("points", `0,100 ${points.join(" ")} ${METRICS_POINTS - 1},100`);
      const line = document.createElementNS(svgNS, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.append(area, line);
    }
    return h("figure", { class: "chart", dataset: { metric: chart.key } },
      h("figcaption", {}, h("span", {}, chart.label), h("span", { class: "value" }, shown)), svg);
  });
  $("charts").replaceChildren(...figures);
}

function startMetrics() {
  if (app.metrics.timer) return;
  sampleMetrics();
  app.metrics.timer = setInterval(sampleMetrics, METRICS_EVERY_MS);
}

function stopMetrics() {
  clearInterval(app.metrics.timer);
  app.metrics.timer = null;
}

// ---- wiring

function start() {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", () => signOut());
  $("reconnect").addEventListener("click", () => {
    const token = app.token;
    signOut(false);
    signIn(token);
  });
  for (const button of document.querySelectorAll("nav [data-view]")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  $("room-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("room-input").value.trim();
    if (!name) return;
    if (!app.rooms.has(name)) app.rooms.set(name, { unread: 0, topic: null });
    $("room-input").value = "";
    await openRoom(name);
  });
  $("composer").addEventListener("submit", sendMessage);
  $("composer-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer-input").addEventListener("input", () => {
    const now = Date.now();
    if (app.room && app.client?.state === State.OPEN && now - app.lastTyping > TYPING_SEND_MS) {
      app.lastTyping = now;
      app.client.typing(app.room, true);
    }
  });
  $("member-form").addEventListener("submit", addMember);
  $("task-form").addEventListener("submit", createTask);
  $("search-form").addEventListener("submit", search);
  $("admin-refresh").addEventListener("click", loadAdmin);
  $("agent-form").addEventListener("submit", createAgent);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && app.room) {
      const info = app.rooms.get(app.room);
      if (info?.unread) {
        info.unread = 0;
        renderRoomList();
      }
    }
  });

  const token = tokenFromFragment() ?? sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else $("token-input").focus();
}

start();
