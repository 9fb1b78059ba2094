"""What ``keyproof serve`` checks before it prints its banner, and the key commands before
they touch anything.

Every failure is a :class:`~keyproof.errors.KeyproofError` whose description names the
cause and, where there is one, the fix; the CLI prints it as one line on stderr and
exits non-zero. Nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from keyproof._files import require_private
from keyproof.errors import ConfigurationError, Unavailable
from keyproof.server._logs import describe_cause
from keyproof.server.config import ENV_PREFIX, Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet
from keyproof.stores import open_store

__all__ = [
    "address_family",
    "check_listen_address",
    "check_store",
    "existing_data_dir",
    "listen_error",
    "preflight",
    "prepare_data_dir",
    "unknown_environment",
]


def preflight(settings: Settings) -> None:
    """Data directory, signing keys, store and listening ports, in that order."""
    prepare_data_dir(settings.data_dir)
    KeySet.load_or_create(settings.data_dir / KEY_FILE_NAME)
    asyncio.run(check_store(settings))
    check_listen_address(settings.host, settings.port, "port")
    if settings.metrics_port:
        check_listen_address(settings.metrics_host, settings.metrics_port, "metrics_port")


def unknown_environment(env: Mapping[str, str]) -> list[str]:
    """A warning per ``KEYPROOF_*`` variable that names no setting (a typo is otherwise
    ignored without a word), with the closest setting's variable when one is close."""
    known = [ENV_PREFIX + f.name.upper() for f in fields(Settings) if f.name != "policy"]
    warnings = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"unknown environment variable {name} is ignored{hint}")
    return warnings


def prepare_data_dir(path: Path) -> None:
    """The data directory, created (0700) if missing; it must be a private, writable directory."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise _not_a_directory(path) from None
    except OSError as exc:
        raise ConfigurationError(
            "invalid_setting", f"data_dir {path} cannot be created: {exc.strerror}"
        ) from None
    _usable_data_dir(path)


def existing_data_dir(path: Path) -> None:
    """For commands that must not create state: the data directory exists and is private."""
    if not path.exists():
        raise ConfigurationError(
            "invalid_setting",
            f"data_dir {path} does not exist: check --data-dir (keyproof serve creates it)",
        )
    _usable_data_dir(path)


def _usable_data_dir(path: Path) -> None:
    if not path.is_dir():
        raise _not_a_directory(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(
            "invalid_setting",
            f"data_dir {path} is not writable by uid {os.geteuid()}: give it to the user "
            "keyproof runs as, or choose another --data-dir",
        )
    require_private(path)


def _not_a_directory(path: Path) -> ConfigurationError:
    return ConfigurationError("invalid_setting", f"data_dir {path} exists and is not a directory")


async def check_store(settings: Settings) -> None:
    """Open the configured store and ping it once; an SQLite file is created or migrated."""
    where = settings.public_summary()["store"]
    try:
        store = open_store(settings.store)
        try:
            await store.ping()
        finally:
            await store.close()
    except Unavailable as exc:
        raise Unavailable(
            "store_unavailable", f"cannot use the store {where}: {describe_cause(exc)}"
        ) from None
    except ConfigurationError as exc:
        if exc.code != "invalid_setting":
            raise
        raise ConfigurationError("invalid_setting", f"store {where}: {exc.description}") from None


def check_listen_address(host: str, port: int, setting: str) -> None:
    """Bind ``host:port`` once, as uvicorn will, so that a taken port is reported before
    the banner instead of in a log line after it."""
    with socket.socket(address_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise listen_error(exc, host, port, setting) from None


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for a host with a colon (an IPv6 address), as uvicorn decides; else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_error(exc: OSError, host: str, port: int, setting: str) -> ConfigurationError:
    """What binding ``host:port`` failing with ``exc`` means to whoever set ``setting``."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigurationError(
            "address_in_use",
            f"{host}:{port} is already in use: stop the process listening there "
            f"or choose another {setting}",
        )
    reason = exc.strerror or str(exc)
    return ConfigurationError(
        "invalid_setting", f"cannot listen on {host}:{port} ({setting}): {reason}"
    )
