"""The ``keyproof`` command: ``serve``, ``check-config``, key management and store migrations.

Every ``serve`` flag can also be given as ``KEYPROOF_<FLAG>`` in the environment or
in the ``[keyproof]`` table of the ``--config`` TOML file (flags win). A failure is one
line on stderr (``keyproof: <code>: <what and how to fix it>``) and exit status 2, or 3
when the store could not be reached (a restart later may succeed).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from keyproof import __version__
from keyproof._time import Clock
from keyproof.errors import ConfigurationError, KeyproofError, Unavailable
from keyproof.server._listeners import serve_workers
from keyproof.server._logs import uvicorn_log_config
from keyproof.server._startup import (
    existing_data_dir,
    preflight,
    unknown_environment,
)
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, RETIRE_AFTER, KeySet
from keyproof.stores import open_store
from keyproof.tokens import JWKS_MAX_AGE

__all__ = ["keys_command", "main", "migrate_command"]

DEFAULT_PUBLISH_FOR = 2 * JWKS_MAX_AGE
MAX_PUBLISH_FOR = 7 * 24 * 3600

SERVE_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("host", str, "interface to bind (default 127.0.0.1)"),
    ("port", int, "TCP port (default 8000)"),
    ("workers", int, "worker processes (default 1)"),
    (
        "store",
        str,
        "store URL: memory://, sqlite:///path, redis://host:port/db, postgresql://user@host/db",
    ),
    ("data-dir", str, "directory for the signing keys and SQLite store (default ./.keyproof)"),
    ("domain", str, "domain written into sign-in messages (default host:port)"),
    ("uri", str, "URI written into sign-in messages (default http://host:port)"),
    ("config", str, "TOML configuration file"),
    ("metrics-port", int, "serve /metrics on this port only, not the public one (default: off)"),
    ("metrics-host", str, "interface of the metrics port (default 127.0.0.1)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyproof", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"keyproof {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server. Every flag can also be set as KEYPROOF_<FLAG> "
        "(e.g. KEYPROOF_DATA_DIR) or in the [keyproof] table of the --config file.",
    )
    check = commands.add_parser(
        "check-config",
        help="validate the configuration without starting",
        description="Resolve flags, KEYPROOF_* variables and the --config file as serve "
        "would, report the first invalid setting, warn about unknown KEYPROOF_* variables, "
        "and check existing state files; nothing is created, opened for writing or bound.",
    )
    for flag, kind, text in SERVE_FLAGS:
        serve.add_argument(f"--{flag}", type=kind, help=text)
        check.add_argument(f"--{flag}", type=kind, help=text)
    keys = commands.add_parser(
        "keys",
        help="manage the server's signing keys",
        description=(
            "show the keys; rotate: publish the next key before it signs; retire: drop the "
            f"oldest key once its successor has signed for {RETIRE_AFTER} s (the 1 h token "
            "lifetime cap plus the largest verifier leeway), whatever the configuration"
        ),
    )
    keys.add_argument("action", choices=["show", "rotate", "retire"])
    keys.add_argument("--data-dir", type=str)
    keys.add_argument("--config", type=str)
    keys.add_argument(
        "--publish-for",
        type=int,
        default=DEFAULT_PUBLISH_FOR,
        help=(
            "rotate: seconds the new key is published before it signs (default "
            f"{DEFAULT_PUBLISH_FOR}; at least the JWKS max-age of {JWKS_MAX_AGE} s lets "
            "every verifier fetch it first)"
        ),
    )
    migrate = commands.add_parser(
        "migrate",
        help="bring the store's schema up to date",
        description="Apply the store's forward schema migrations now (serve applies them "
        "on start too). Only the PostgreSQL store has a versioned schema.",
    )
    for flag in ("store", "config", "data-dir"):
        migrate.add_argument(f"--{flag}", type=str)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        name: value
        for name, value in vars(args).items()
        if name not in {"command", "action", "publish_for"}
    }
    return Settings.load(flags, os.environ)


SERVER_EXTRA_MISSING = (
    "keyproof: serving needs the server extra: pip install 'keyproof[server]' ({module} is missing)"
)


def _server_modules() -> tuple[ModuleType, Callable[[Settings], Any]] | None:
    """uvicorn and the app factory, or None (after saying why) without the server extra."""
    try:
        import uvicorn

        from keyproof.server.app import create_app
    except ImportError as missing:
        print(SERVER_EXTRA_MISSING.format(module=missing.name), file=sys.stderr)
        return None
    return uvicorn, create_app


def _warn_about_environment() -> None:
    for warning in unknown_environment(os.environ):
        print(f"keyproof: warning: {warning}", file=sys.stderr)


def check_config(settings: Settings) -> int:
    """Report on settings already validated by loading them, and on existing state files."""
    _warn_about_environment()
    path = settings.data_dir / KEY_FILE_NAME
    if settings.data_dir.exists():
        existing_data_dir(settings.data_dir)
        if path.exists():
            KeySet.load(path)
    print(
        f"keyproof: configuration is valid: issuer {settings.issuer}, "
        f"store {settings.public_summary()['store']}, data_dir {settings.data_dir}"
    )
    return 0


def serve(settings: Settings) -> int:
    modules = _server_modules()
    if modules is None:
        return 2
    uvicorn, create_app = modules
    _warn_about_environment()
    preflight(settings)
    from keyproof.server._slowclients import HeaderDeadlineProtocol

    base = settings.uri.rstrip("/")
    print(f"keyproof issuer {settings.issuer}, store {settings.public_summary()['store']}")
    print(f"  challenge endpoint: {base}/v1/challenge")
    print(f"  JWKS:               {base}/.well-known/jwks.json", flush=True)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": "uvloop",
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "log_config": uvicorn_log_config(settings.log_level),
        "http": functools.partial(
            HeaderDeadlineProtocol,
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
        ),
        "limit_concurrency": settings.max_connections,
        "ws": "none",  # no WebSocket endpoint: an Upgrade request is served as plain HTTP
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    os.environ.update(settings.as_environment())
    serve_workers(
        uvicorn,
        "keyproof.server.app:create_app_from_environment",
        workers=settings.workers,
        **options,
    )
    return 0


def keys_command(
    settings: Settings,
    action: str,
    *,
    publish_for: int = DEFAULT_PUBLISH_FOR,
    clock: Clock = time.time,
) -> None:
    """``show``, ``rotate`` (publish the next key before it signs) or ``retire`` the oldest.

    Never creates anything: a data directory or key file that does not exist is an
    error (``keyproof serve`` creates them). ``retire`` waits
    :data:`~keyproof.server.keys.RETIRE_AFTER` seconds after the successor
    started signing, independent of ``settings``: the server that minted the tokens may
    have run with another ``token_ttl`` than this command sees.
    """
    existing_data_dir(settings.data_dir)
    path = settings.data_dir / KEY_FILE_NAME
    key_set = KeySet.load(path, clock)
    if action == "rotate":
        key_set = _rotate(key_set, publish_for)
        key_set.save(path)
    elif action == "retire":
        key_set = key_set.retired()
        key_set.save(path)
    _show(key_set)


def _rotate(key_set: KeySet, publish_for: int) -> KeySet:
    if not 1 <= publish_for <= MAX_PUBLISH_FOR:
        raise ConfigurationError(
            "invalid_setting", f"--publish-for must be 1..{MAX_PUBLISH_FOR} seconds"
        )
    if key_set.pending():
        raise ConfigurationError(
            "key_in_use", "a rotated key is already waiting to sign; rotate again after it signs"
        )
    if publish_for < JWKS_MAX_AGE:
        print(
            f"keyproof: warning: --publish-for {publish_for} is shorter than the JWKS max-age "
            f"({JWKS_MAX_AGE} s); verifiers rely on refreshing on an unknown kid",
            file=sys.stderr,
        )
    return key_set.rotated(publish_for=publish_for)


def _show(key_set: KeySet) -> None:
    signing = key_set.signing_key().kid
    for key in key_set.keys:
        marker = "signing" if key.kid == signing else "published"
        print(f"{key.kid}  active_from={key.active_from}  {marker}")
    retire_at = key_set.retirable_at()
    if retire_at is not None:
        print(f"oldest key retirable at {retire_at}")


def migrate_command(settings: Settings) -> None:
    """Open the configured store and apply its forward migrations; say what was done.

    Raises ``Unavailable`` when the store cannot be reached, ``ConfigurationError``
    when its schema is newer than this keyproof.
    """
    print(asyncio.run(_migrate(settings)))


async def _migrate(settings: Settings) -> str:
    store = open_store(settings.store)
    try:
        versions = await store.migrate()
    finally:
        await store.close()
    where = settings.public_summary()["store"]
    if versions is None:
        return f"{where}: no versioned schema, nothing to migrate"
    before, after = versions
    if before == after:
        return f"{where}: schema up to date at version {after}"
    return f"{where}: schema migrated from version {before} to {after}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return serve(settings)
        if args.command == "check-config":
            return check_config(settings)
        if args.command == "migrate":
            migrate_command(settings)
            return 0
        keys_command(settings, args.action, publish_for=args.publish_for)
    except KeyproofError as exc:
        print(f"keyproof: {exc.code}: {exc.description}", file=sys.stderr)
        return 3 if isinstance(exc, Unavailable) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
