"""Composition root: builds the object graph from Settings and runs it.

The only module that knows every layer. Services start in list order and stop in reverse,
each within a timeout, so a new component is one more entry, not an edit of start/stop.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import lmdb
import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NoOpTracer

from ._speedups.framing import frame_text
from ._speedups.router import Router
from .api import create_api
from .api.deps import ApiContext
from .api.mcp import McpServer
from .api.server import HttpServer
from .auth import TokenVerifier, mint_token, resolve_hmac_secret
from .cluster import JetStreamEngine
from .cluster.engine import position_of
from .config import HMAC_ALGORITHMS, Settings
from .core.access import AccessRules
from .core.agents import AgentRegistry
from .core.approvals import Approvals
from .core.directory import UserDirectory
from .core.extension_host import ExtensionHost
from .core.interceptors import InterceptorChain
from .core.memory import FILE_NAME as SEARCH_FILE
from .core.memory import Memory, SearchIndexer, SearchStore
from .core.observers import Observers
from .core.pipeline import STREAM_DB, MessagePipeline
from .core.rate_limits import UserRateLimits
from .core.room_admin import RoomAdmin
from .core.rooms import RoomDirectory
from .core.streams import LiveStreams
from .core.tasks.service import TaskService
from .core.writes import RoomWrites
from .errors import ConfigError
from .extensions.ai.runs import install_runs
from .extensions.ai.setup import build_runtime
from .extensions.loader import load_extensions
from .extensions.mcp.setup import install_mcp
from .extensions.plugins import install_plugins
from .extensions.plugins.admin import PluginAdmin
from .extensions.skills import install_skills
from .gateway.handlers import RequestHandlers
from .gateway.server import Gateway
from .observability.health import Health
from .observability.loop_lag import LoopLag
from .observability.metrics import MetricSources, make_registry
from .observability.tracing import make_tracer_provider, tracer_from
from .protocol import events
from .store import GroupCommitWriter, LmdbStore
from .store.keys import split_room_key
from .store.retention import RetentionSweeper

log = logging.getLogger("nexus")

DEV_TOKEN_TTL = 24 * 3600
SERVICE_STOP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Service:
    """A component with a lifecycle: started in order, stopped in reverse."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    timeout: float = SERVICE_STOP_TIMEOUT


def _sync(fn: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fn()

    return run


def _maybe_async(fn: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        result = fn()
        if inspect.isawaitable(result):
            await result

    return run


@dataclass
class App:
    settings: Settings
    store: LmdbStore
    writer: GroupCommitWriter
    pipeline: MessagePipeline
    handlers: RequestHandlers
    gateway: Gateway
    http: HttpServer
    health: Health
    tracer_provider: TracerProvider | None
    services: list[Service] = field(default_factory=list)
    _started: list[Service] = field(default_factory=list)
    _drain_started: float | None = None

    def begin_drain(self) -> None:
        """Answer /readyz with 503 and refuse new WebSocket upgrades, serving the rest.

        SIGUSR1 calls it (the Helm chart's preStop hook), so load balancers stop routing
        here while the pod still serves; the SIGTERM that follows waits only what is left
        of ``drain_delay``.
        """
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            log.info("draining: /readyz answers 503")
        self.health.draining = True

    async def start(self) -> tuple[int, int]:
        """Start every service; returns (WebSocket port, HTTP port)."""
        for service in self.services:
            await asyncio.wait_for(service.start(), service.timeout)
            self._started.append(service)
        return self.gateway.port, self.http.port

    async def stop(self) -> None:
        """Graceful drain: unready, wait ``drain_delay``, stop the services in reverse order
        (the gateway finishes pending commits and closes clients with 1001), then the
        writer and the store."""
        self.begin_drain()  # /readyz answers 503 from here on
        assert self._drain_started is not None
        remaining = self.settings.drain_delay - (time.monotonic() - self._drain_started)
        if remaining > 0:
            # Give load balancers time to notice /readyz before the listener goes.
            await asyncio.sleep(remaining)
        while self._started:
            service = self._started.pop()
            try:
                await asyncio.wait_for(service.stop(), service.timeout)
            except TimeoutError:
                log.error("service %s did not stop within %.1fs", service.name, service.timeout)
            except Exception:
                log.exception("service %s failed to stop", service.name)
        self.writer.close(self.settings.shutdown_timeout)
        self.store.close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def build(
    settings: Settings, loop: asyncio.AbstractEventLoop, span_exporter: SpanExporter | None = None
) -> App:
    hmac_secret = None
    if set(settings.auth_algorithms) & HMAC_ALGORITHMS:
        hmac_secret = resolve_hmac_secret(settings, create=True)
    verifier = TokenVerifier(settings, hmac_secret=hmac_secret)
    store = LmdbStore(
        settings.data_path / "lmdb",
        map_size=settings.store_map_size,
        durability=settings.store_durability,
    )
    writer = GroupCommitWriter(loop)
    router = Router()
    provider = make_tracer_provider(settings, span_exporter)
    tracer = tracer_from(provider)
    health = Health()
    health.add_check("store", _store_open(store))

    # core
    interceptors = InterceptorChain(
        max_body_bytes=settings.max_body_bytes, max_meta_bytes=settings.max_meta_bytes
    )
    observers = Observers()
    pipeline = MessagePipeline(
        store,
        writer,
        router,
        loop,
        max_batch=settings.commit_max_batch,
        interceptors=interceptors,
        observers=observers,
        inline_commit=settings.store_durability == "none",
        tracer=tracer,
    )
    rooms = RoomDirectory(store, settings.room_create_roles)
    access = AccessRules(store)
    writes = RoomWrites(pipeline, store, access)
    room_admin = RoomAdmin(rooms, pipeline, store, access)
    directory = UserDirectory(store, pipeline.submit_meta)
    user_limits = UserRateLimits(settings.rate_user_per_s, settings.rate_user_burst)

    # edges
    # extensions: agents first (an observer and a service), then the configured modules
    streams = LiveStreams()
    agent_registry = AgentRegistry(store, pipeline)
    # cluster mode: room logs in JetStream, this node's LMDB their cache (docs/cluster.md)
    engine = (
        _cluster_engine(settings, store, pipeline, rooms, router, agent_registry, health, streams)
        if settings.cluster_engine == "nats"
        else None
    )
    host = ExtensionHost(settings, store, pipeline, rooms, access, writes, router)
    # memory: the search file beside LMDB, its indexer (an observer), the service
    search_store = memory = None
    if settings.search_enabled:
        search_store = SearchStore(settings.data_path / SEARCH_FILE)
        memory = Memory(search_store, rooms, access, writes, store)
        host.add_observer(SearchIndexer(search_store))
    agent_runtime = build_runtime(host, agent_registry, streams, tracer, memory=memory)
    # tasks: a projection of the log (observer + service), agents as assignees
    tasks = TaskService(host)
    host.add_observer(tasks)
    host.add_service("tasks", tasks.start, tasks.stop)
    install_runs(agent_runtime, tasks)
    # Wasm plugins: the API's installs and the plugins folder's (seams only while needed)
    plugins = install_plugins(host)
    # skills (docs/skills.md): registry, catalog and tools for agents, /skill-name
    skills = install_skills(agent_runtime)
    # MCP client: the operator's MCP servers give agents tools; a room member approves
    # the destructive ones (core/approvals, decided over WebSocket and HTTP)
    approvals = Approvals(writes, access, store)
    mcp_metrics = install_mcp(host, agent_runtime, agent_registry, approvals)
    load_extensions(settings.extensions, host)

    handlers = RequestHandlers(
        settings,
        rooms,
        router,
        writes,
        access,
        store,
        user_limits,
        directory,
        streams=streams,
        agents=agent_runtime,
        memory=memory,
    )
    handlers.tasks = tasks
    if engine is not None:
        handlers.room_gate = engine.gate
    handlers.approvals = approvals
    tasks.notify = handlers.send_to_user
    gateway = Gateway(settings, handlers, verifier, pipeline, health, loop)

    def policy(rkey: str) -> tuple[int, float]:
        meta = store.room_meta(rkey) or {}
        retention = meta.get("retention") or {}
        return (
            int(retention.get("max_count", settings.retention_max_count)),
            float(retention.get("max_age", settings.retention_max_age)),
        )

    sweeper = RetentionSweeper(
        store,
        writer,
        policy,
        interval=settings.retention_interval,
        idempotency_window=settings.idempotency_window,
        on_trim=observers.trimmed,
    )
    api_context = ApiContext(
        settings,
        store,
        rooms,
        access,
        writes,
        room_admin,
        directory,
        gateway,
        health,
        agent_registry,
        agent_runtime,
        tracer or NoOpTracer(),
        tasks=tasks,
        memory=memory,
        plugins=PluginAdmin(plugins),
        skills=skills,
        approvals=approvals,
    )
    # Nexus as an MCP server on the HTTP port: its sessions' task group is a service
    mcp = (
        McpServer(
            api_context,
            observers.tap,
            session_idle_timeout=settings.mcp_session_idle_timeout,
        )
        if settings.mcp_enabled
        else None
    )
    loop_lag = LoopLag(loop)
    registry, http_metrics = make_registry(
        MetricSources(
            stats=gateway.stats,
            connections=gateway.connection_count,
            sessions=lambda: len(handlers.sessions),
            pipeline=pipeline,
            router=router,
            flush_queue=gateway.flush_queue,
            loop_lag=loop_lag,
            extra=(
                agent_runtime.metrics.collect,
                plugins.collect,
                mcp_metrics.collect,
                *([mcp.collect] if mcp is not None else []),
            ),
        )
    )
    api = create_api(
        api_context,
        verifier=verifier,
        user_limits=user_limits,
        on_auth_failure=gateway.stats.auth_failed,
        registry=registry,
        http_metrics=http_metrics,
        mcp=mcp,
        ws_port=lambda: gateway.port,
    )
    http = HttpServer(api, settings.http_host, settings.http_port)
    services = [
        # Stops last but for the cache: every node's link to the shared log.
        *([Service("cluster", engine.start, engine.stop)] if engine is not None else []),
        *(
            # Stops last: after the indexer (an observer) has stopped writing to it.
            [Service("search", _sync(lambda: None), _sync(search_store.close))]
            if search_store is not None
            else []
        ),
        Service("observers", _sync(observers.start), observers.stop),
        *(
            Service(name, _maybe_async(start), _maybe_async(stop))
            for name, start, stop in host.services
        ),
        Service("loop-lag", _sync(loop_lag.start), _sync(loop_lag.stop)),
        Service("retention", _sync(sweeper.start), _sync(sweeper.stop)),
        Service("http", http.start, http.stop),
        # After http: stops before it, ending MCP streams so the listener closes at once.
        *([Service("mcp", mcp.start, mcp.stop)] if mcp is not None else []),
        # Stops first: closes the listener, lets pending commits finish, closes clients.
        Service("gateway", gateway.start, gateway.stop, timeout=2 * settings.shutdown_timeout + 5),
    ]
    return App(
        settings, store, writer, pipeline, handlers, gateway, http, health, provider, services
    )


def _store_open(store: LmdbStore) -> Callable[[], bool]:
    def check() -> bool:
        try:
            store.env.stat()  # under a microsecond; raises once the environment is closed
        except lmdb.Error:
            return False
        return True

    return check


def _cluster_engine(
    settings: Settings,
    store: LmdbStore,
    pipeline: MessagePipeline,
    rooms: RoomDirectory,
    router: Router,
    agents: AgentRegistry,
    health: Health,
    streams: LiveStreams,
) -> JetStreamEngine:
    """The JetStream engine, wired: stored entries into the pipeline, shared metadata
    into the store (and the rooms' and agents' caches), other nodes' presence to the
    members here."""
    engine = JetStreamEngine(
        settings,
        cached_seq=store.last_seq,
        cached_position=lambda rkey: position_of(store.record(STREAM_DB, rkey.encode())),
    )

    def apply_stored(rkey: str, *entry: Any) -> None:
        """(kind, seq, event id, record, client key, accepted ms, patch, stream seq)"""
        room = rooms.loaded(rkey) or rooms.find(*split_room_key(rkey))
        if room is None:  # its settings are not here yet: the feed is restarted then
            log.warning("cluster: an entry of %s before its room settings", rkey)
            return
        pipeline.submit_stored(room, *entry)

    def apply_meta(db: str, key: bytes, value: bytes | None) -> None:
        def refresh() -> None:
            if db == "room" and value is not None:
                rooms.refresh(key.decode(), orjson.loads(value))
            elif db == "agent":
                agents.apply_remote(key, value)

        pipeline.submit_meta([(db, key, value)], refresh, shared=False)

    def presence_changed(rkey: str, user: str, kind: str, node: str, joined: bool) -> None:
        room = rooms.loaded(rkey)
        if room is None:
            return
        changed = room.remote_join(user, node, kind) if joined else room.remote_leave(user, node)
        if changed and room.present_count <= settings.presence_broadcast_max:
            action = "join" if joined else "leave"
            router.broadcast(rkey, frame_text(events.presence(room.name, user, kind, action)))

    def reply_relayed(rkey: str, message_id: str, sender: str, text: str, offset: int) -> None:
        room = rooms.loaded(rkey)
        if room is None:
            return
        if offset < 0:
            streams.unmirror(rkey, message_id)
            return
        event = streams.mirror(rkey, room.name, message_id, sender, text, offset)
        if event is not None:
            router.broadcast(rkey, frame_text(event))

    engine.apply_stored = apply_stored
    engine.apply_meta = apply_meta
    engine.presence_changed = presence_changed
    engine.reply_relayed = reply_relayed
    streams.relay = lambda reply, text, offset: engine.relay(
        reply.room_key, reply.message_id, reply.sender, text, offset
    )
    pipeline.engine = engine
    rooms.on_load = engine.attach
    health.add_check("engine", lambda: engine.available)
    return engine


def dev_token(settings: Settings) -> str | None:
    """A 24h admin token for user 'dev' of tenant 'dev', when the dev HMAC secret is in use."""
    if (
        not (set(settings.auth_algorithms) & HMAC_ALGORITHMS)
        or settings.auth_secret
        or settings.auth_secret_file
    ):
        return None
    secret = resolve_hmac_secret(settings)
    if secret is None:
        return None
    return mint_token(
        secret,
        user="dev",
        tenant="dev",
        roles=["admin", "member"],
        ttl=DEV_TOKEN_TTL,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        algorithm=sorted(set(settings.auth_algorithms) & HMAC_ALGORITHMS)[0],
    )


async def serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    app = build(settings, loop)
    port, http_port = await app.start()
    # Everything built so far (modules, app objects) lives for the whole run: move it out
    # of the collector's reach so a full collection does not walk it. Measured: p99.9
    # round-trip latency under load fell from ~20 ms to ~1 ms (echo, 16 connections).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, app.begin_drain)
    url = f"ws://{settings.host}:{port}/ws"
    # stdout lines are the start contract: tests and scripts read the URL from here.
    print(f"nexus listening on {url}", flush=True)
    print(f"nexus http api on http://{settings.http_host}:{http_port}", flush=True)
    token = dev_token(settings) if settings.print_dev_token else None
    if token:
        print(f"development token (user dev, tenant dev, 24h): {token}", flush=True)
    # The web app; with the dev token in the fragment (never sent to the server) it signs
    # in at once.
    web_host = settings.http_host if settings.http_host not in ("0.0.0.0", "::") else "127.0.0.1"
    web_host = f"[{web_host}]" if ":" in web_host else web_host
    web_url = f"http://{web_host}:{http_port}/app/" + (f"#token={token}" if token else "")
    print(f"nexus web app on {web_url}", flush=True)
    log.info(
        "data in %s; health at http://%s:%d/healthz",
        settings.data_path.resolve(),
        settings.host,
        port,
    )
    await stop.wait()
    log.info("shutting down")
    await app.stop()
    print("nexus stopped", flush=True)
    return 0


def run(settings: Settings) -> int:
    import uvloop

    try:
        return uvloop.run(serve(settings))
    except OSError as exc:
        print(f"nexus: cannot start: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"nexus: {exc}", file=sys.stderr)
        return 2
