"""The ``keyproof`` command: ``serve`` and key management.

Every ``serve`` flag can also be given as ``KEYPROOF_<FLAG>`` in the environment or
in the ``[keyproof]`` table of the ``--config`` TOML file (flags win).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from keyproof.config import Settings
from keyproof.errors import ConfigurationError
from keyproof.keys import KEY_FILE_NAME, KeySet

__all__ = ["main"]

SERVE_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("host", str, "interface to bind (default 127.0.0.1)"),
    ("port", int, "TCP port (default 8000)"),
    ("workers", int, "worker processes (default 1)"),
    ("store", str, "store URL: memory://, sqlite:///path, redis://host:port/db"),
    ("data-dir", str, "directory for the signing keys and SQLite store (default ./.keyproof)"),
    ("domain", str, "domain written into sign-in messages (default host:port)"),
    ("uri", str, "URI written into sign-in messages (default http://host:port)"),
    ("config", str, "TOML configuration file"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyproof", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    for flag, kind, text in SERVE_FLAGS:
        serve.add_argument(f"--{flag}", type=kind, help=text)
    keys = commands.add_parser("keys", help="manage the server's signing keys")
    keys.add_argument("action", choices=["show", "rotate", "retire"])
    keys.add_argument("--data-dir", type=str)
    keys.add_argument("--config", type=str)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        name: value for name, value in vars(args).items() if name not in {"command", "action"}
    }
    return Settings.load(flags, os.environ)


def serve(settings: Settings) -> None:
    import uvicorn

    KeySet.load_or_create(settings.data_dir / KEY_FILE_NAME)
    base = settings.uri.rstrip("/")
    print(f"keyproof issuer {settings.issuer}, store {settings.public_summary()['store']}")
    print(f"  challenge endpoint: {base}/v1/challenge")
    print(f"  JWKS:               {base}/.well-known/jwks.json", flush=True)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
        "server_header": False,
    }
    if settings.workers == 1:
        from keyproof.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update(settings.as_environment())
    uvicorn.run(
        "keyproof.app:create_app_from_environment",
        factory=True,
        workers=settings.workers,
        **options,
    )


def keys_command(settings: Settings, action: str) -> None:
    path = settings.data_dir / KEY_FILE_NAME
    key_set = KeySet.load_or_create(path)
    if action == "rotate":
        key_set = key_set.rotated(publish_for=settings.token_ttl)
        key_set.save(path)
    elif action == "retire":
        key_set = key_set.retired()
        key_set.save(path)
    signing = key_set.signing_key().kid
    for key in key_set.keys:
        marker = "signing" if key.kid == signing else "published"
        print(f"{key.kid}  active_from={key.active_from}  {marker}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            serve(settings)
        else:
            keys_command(settings, args.action)
    except ConfigurationError as exc:
        print(f"keyproof: {exc.code}: {exc.description}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
