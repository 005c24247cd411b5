"""The ``nexus`` command: serve, token, --version."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__
from .config import FIELD_DOCS, HMAC_ALGORITHMS, Settings, load_settings
from .errors import ConfigError


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return (
        "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "settings (each also NEXUS_<NAME> in the environment or <name> in the TOML file; "
        "see docs/configuration.md)"
    )
    for f in fields(Settings):
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"set_{f.name}",
            metavar=f.type.upper()
            if isinstance(f.type, str) and f.type in ("int", "float", "str", "bool")
            else "VALUE",
            default=None,
            help=f"{FIELD_DOCS[f.name]} (default: {_default_text(f.default)})",
        )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nexus", description="Nexus real-time collaboration server")
    p.add_argument("--version", action="version", version=f"nexus {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", "-c", help="TOML config file (or NEXUS_CONFIG)")
    _add_setting_flags(serve)

    tok = sub.add_parser("token", help="mint a signed JWT for development and tests")
    tok.add_argument("--config", "-c", help="TOML config file (or NEXUS_CONFIG)")
    tok.add_argument("--user", required=True)
    tok.add_argument("--tenant", required=True)
    tok.add_argument("--roles", default="member", help="comma-separated (default: member)")
    tok.add_argument("--kind", choices=("human", "agent"), default="human")
    tok.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    tok.add_argument("--private-key-file", help="PEM key for RS*/ES*/PS* algorithms")
    tok.add_argument("--kid", help="key id header (for JWKS setups)")
    _add_setting_flags(tok)

    reindex = sub.add_parser(
        "reindex", help="rebuild the search index from the room logs (server stopped)"
    )
    reindex.add_argument("--config", "-c", help="TOML config file (or NEXUS_CONFIG)")
    reindex.add_argument(
        "--memory",
        action="store_true",
        help="also rebuild the memory records from their events in the log (records whose "
        "events retention removed are lost)",
    )
    _add_setting_flags(reindex)

    chat = sub.add_parser("chat", help="chat in a terminal (rooms, agents' replies, /commands)")
    chat.add_argument("--config", "-c", help="TOML config file (or NEXUS_CONFIG)")
    chat.add_argument("--url", help="WebSocket URL (default: ws://<host>:<port>/ws)")
    chat.add_argument("--token", help="JWT (or NEXUS_TOKEN); default: a development token")
    chat.add_argument("--token-file", help="file holding the JWT")
    chat.add_argument("--user", default="dev", help="user of the development token (dev)")
    chat.add_argument("--tenant", default="dev", help="tenant of the development token (dev)")
    chat.add_argument("--room", action="append", help="room to join (repeatable; general)")
    _add_setting_flags(chat)
    return p


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from .core.memory import FILE_NAME, SearchStore
    from .core.memory.rebuild import rebuild
    from .store import LmdbStore

    started = time.monotonic()
    log = LmdbStore(
        settings.data_path / "lmdb",
        map_size=settings.store_map_size,
        durability=settings.store_durability,
    )
    index = SearchStore(settings.data_path / FILE_NAME)
    try:
        counts = rebuild(log, index, memory=args.memory)
    finally:
        index.close()
        log.close()
    print(
        f"nexus reindex: {counts['entries']} entries of {counts['rooms']} rooms applied "
        f"in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from .auth import mint_token, resolve_hmac_secret
    from .auth.principal import ID_PATTERN
    from .auth.tokens import DEV_SECRET_FILE

    for what, value in (("--user", args.user), ("--tenant", args.tenant)):
        if not ID_PATTERN.fullmatch(value):
            print(
                f"nexus token: {what} must be 1-128 characters of A-Z a-z 0-9 _ . @ : + - "
                f"(the server refuses others), got {value!r}",
                file=sys.stderr,
            )
            return 2
    algorithm = settings.auth_algorithms[0]
    if algorithm in HMAC_ALGORITHMS:
        key: Any = resolve_hmac_secret(settings)
        if key is None:
            # Never invent a secret here: the server would not know it, and every token
            # minted with it would be refused.
            path = (settings.data_path / DEV_SECRET_FILE).resolve()
            print(
                f"nexus token: no development secret at {path}. Start the server once "
                "(make run) to create it, run this command from the server's directory "
                "or pass --data-dir, or configure auth_secret_file.",
                file=sys.stderr,
            )
            return 2
        if not (settings.auth_secret or settings.auth_secret_file):
            print(
                "nexus token: signed with the development secret "
                f"{(settings.data_path / DEV_SECRET_FILE).resolve()}",
                file=sys.stderr,
            )
    elif args.private_key_file:
        key = Path(args.private_key_file).read_text("utf-8")
    else:
        print("nexus token: --private-key-file is required for " + algorithm, file=sys.stderr)
        return 2
    print(
        mint_token(
            key,
            user=args.user,
            tenant=args.tenant,
            roles=[r for r in args.roles.split(",") if r],
            kind=args.kind,
            ttl=args.ttl,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            algorithm=algorithm,
            kid=args.kid,
        )
    )
    return 0


def _chat_token(args: argparse.Namespace, settings: Settings) -> str | None:
    import os

    from .auth import mint_token, resolve_hmac_secret

    if args.token or os.environ.get("NEXUS_TOKEN"):
        return str(args.token or os.environ["NEXUS_TOKEN"])
    if args.token_file:
        return Path(args.token_file).read_text("utf-8").strip()
    if set(settings.auth_algorithms) & HMAC_ALGORITHMS:
        secret = resolve_hmac_secret(settings)  # the running server's (make run) secret
        if secret is not None:
            return mint_token(
                secret,
                user=args.user,
                tenant=args.tenant,
                roles=["admin", "member"],
                ttl=24 * 3600,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                algorithm=settings.auth_algorithms[0],
            )
    return None


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from .chat import run_chat

    token = _chat_token(args, settings)
    if token is None:
        print(
            "nexus chat: no token. Pass --token (or NEXUS_TOKEN, --token-file), or run it "
            "beside a development server (make run) so its secret can sign one.",
            file=sys.stderr,
        )
        return 2
    url = args.url or f"ws://{settings.host}:{settings.port}/ws"
    return run_chat(url, token, args.room or ["general"])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"nexus: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(args, settings)
    if args.command == "reindex":
        return _reindex(args, settings)
    if args.command == "chat":
        return _chat(args, settings)
    from .app import run
    from .observability.logging import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    return run(settings)
