"""The server's own Ed25519 signing keys: an ordered set with ``kid``s.

The newest *active* key signs; every key in the file is published in the JWKS and
verifies. Rotation adds a key that is published at once but signs only from its
``active_from`` time, so verifiers have fetched it before the first token they see.
The file lives in the data directory with mode 0600 and is replaced atomically.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from nacl.signing import SigningKey as NaclSigningKey

from keyproof import jose
from keyproof._files import require_private
from keyproof._time import Clock
from keyproof.crypto.encoding import encode_base64url, parse_base64url
from keyproof.errors import ConfigurationError
from keyproof.tokens import MAX_TOKEN_LIFETIME, MAX_VERIFY_LEEWAY

__all__ = [
    "KEY_FILE_NAME",
    "RETIRE_AFTER",
    "KeyFile",
    "KeySet",
    "SigningKey",
    "jwk_thumbprint",
]

KEY_FILE_NAME = "signing-keys.json"
RETIRE_AFTER = MAX_TOKEN_LIFETIME + MAX_VERIFY_LEEWAY
"""Seconds after its successor starts signing before a key may be retired.

A bound that holds for every configuration: no token outlives the hard lifetime cap, and
no verifier accepts one longer than that plus its leeway, whatever ``token_ttl`` the
server had when it signed, or the command runs with now.
"""
logger = logging.getLogger("keyproof.server.keys")


def jwk_thumbprint(public_jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an OKP key: SHA-256 over the required members, sorted."""
    members = {k: public_jwk[k] for k in ("crv", "kty", "x")}
    return jose.jwk_thumbprint(jose.public_key_from_jwk(members))


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key with its id and the time from which it may sign."""

    kid: str
    private: Ed25519PrivateKey
    created_at: int
    active_from: int

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, active_from={self.active_from})"

    @functools.cached_property
    def public(self) -> Ed25519PublicKey:
        """Kept: deriving it costs more than a dictionary look-up on every verification."""
        return self.private.public_key()

    @functools.cached_property
    def signer(self) -> NaclSigningKey:
        """The same key for libsodium, which signs tokens faster (the same signatures)."""
        return NaclSigningKey(self.private.private_bytes_raw())

    def public_jwk(self) -> dict[str, str]:
        return {**jose.public_jwk(self.public), "kid": self.kid, "alg": "Ed25519", "use": "sig"}

    @classmethod
    def generate(cls, now: int, active_from: int | None = None) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = jose.jwk_thumbprint(private.public_key())
        return cls(kid, private, now, now if active_from is None else active_from)

    def to_record(self) -> dict[str, Any]:
        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "kid": self.kid,
            "d": encode_base64url(seed),
            "created_at": self.created_at,
            "active_from": self.active_from,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SigningKey:
        seed = parse_base64url(str(record["d"]), max_length=32)
        if seed is None:
            raise ValueError("d is not base64url")
        private = Ed25519PrivateKey.from_private_bytes(seed)
        key = cls(
            str(record["kid"]), private, int(record["created_at"]), int(record["active_from"])
        )
        if jose.jwk_thumbprint(key.public) != key.kid:
            raise ValueError("kid does not match the key")
        return key


class KeySet:
    """Ordered signing keys, oldest first."""

    def __init__(self, keys: list[SigningKey], clock: Clock = time.time) -> None:
        if not keys:
            raise ConfigurationError("invalid_key_file", "the key set is empty")
        self.keys = sorted(keys, key=lambda k: (k.active_from, k.created_at))
        self._clock = clock

    def __repr__(self) -> str:
        return f"KeySet(kids={[k.kid for k in self.keys]!r})"

    def current(self) -> KeySet:
        """A fixed set is its own key source (see :class:`KeyFile` for one that reloads)."""
        return self

    def signing_key(self) -> SigningKey:
        """The newest key whose ``active_from`` has passed (the oldest if none has)."""
        now = self._clock()
        active = [k for k in self.keys if k.active_from <= now]
        return active[-1] if active else self.keys[0]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {k.kid: k.public for k in self.keys}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    # -- persistence -------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, clock: Clock = time.time) -> KeySet:
        """Read the key file; refused when missing, malformed or open to group or others."""
        require_private(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keys = [SigningKey.from_record(r) for r in document["keys"]]
        except FileNotFoundError:
            raise ConfigurationError("invalid_key_file", f"no key file at {path}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = type(exc).__name__
            raise ConfigurationError("invalid_key_file", f"{path} unreadable ({reason})") from None
        return cls(keys, clock)

    @classmethod
    def load_or_create(cls, path: Path, clock: Clock = time.time) -> KeySet:
        """Load the key file, creating it with one fresh key if it does not exist."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            first = cls([SigningKey.generate(int(clock()))], clock)
            # Another worker may have created it first; then load theirs.
            with contextlib.suppress(FileExistsError):
                first._write(path, exclusive=True)
        return cls.load(path, clock)

    def save(self, path: Path) -> None:
        self._write(path, exclusive=False)

    def _write(self, path: Path, *, exclusive: bool) -> None:
        data = json.dumps({"keys": [k.to_record() for k in self.keys]}, indent=2).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            finally:
                tmp.unlink()
        else:
            tmp.replace(path)

    def rotated(self, publish_for: int) -> KeySet:
        """A new set with a fresh key that starts signing ``publish_for`` seconds from now."""
        now = int(self._clock())
        return KeySet([*self.keys, SigningKey.generate(now, now + publish_for)], self._clock)

    def pending(self) -> list[SigningKey]:
        """Published keys that have not started signing yet."""
        now = self._clock()
        return [k for k in self.keys if k.active_from > now]

    def retirable_at(self) -> int | None:
        """When the oldest key may go: :data:`RETIRE_AFTER` after its successor signs."""
        if len(self.keys) < 2:
            return None
        return self.keys[1].active_from + RETIRE_AFTER

    def retired(self) -> KeySet:
        """A new set without the oldest key, once no unexpired token can carry its ``kid``.

        Every token the oldest key signed was minted before its successor started signing,
        so no verifier accepts it :data:`RETIRE_AFTER` seconds after that; the set never
        drops its signing key.
        """
        allowed_at = self.retirable_at()
        if allowed_at is None:
            raise ConfigurationError("key_in_use", "cannot retire the only key")
        if self.keys[0] is self.signing_key():
            raise ConfigurationError("key_in_use", "the oldest key still signs")
        if self._clock() < allowed_at:
            raise ConfigurationError(
                "key_in_use",
                f"tokens signed by {self.keys[0].kid} may be valid until {allowed_at}; "
                f"retire it at or after that time",
            )
        return KeySet(self.keys[1:], self._clock)


class KeyFile:
    """The key file of a running server, reloaded when it changes on disk.

    ``keyproof keys rotate`` and ``retire`` replace the file atomically; a running
    server sees the new set on the next request after at most ``interval`` seconds,
    without a restart. The file is stat()ed at most once per ``interval``.
    """

    def __init__(self, path: Path, clock: Clock = time.time, interval: float = 1.0) -> None:
        self.path = path
        self._clock = clock
        self._interval = interval
        self._keys = KeySet.load_or_create(path, clock)
        self._stamp = self._stat()
        self._checked = clock()
        self.reload_error: str | None = None
        """Why the last reload failed, while the file on disk cannot be used."""

    def __repr__(self) -> str:
        return f"KeyFile({str(self.path)!r})"

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> KeySet:
        """The key set as of the last check, re-read if the file changed since."""
        now = self._clock()
        if abs(now - self._checked) < self._interval:
            return self._keys
        self._checked = now
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            try:
                self._keys = KeySet.load(self.path, self._clock)
                self._stamp = stamp
                self.reload_error = None
            except ConfigurationError as exc:
                # Keep signing with the last good set; /readyz and the log tell the operator.
                self.reload_error = exc.description
                logger.warning("key file not reloaded: %s", exc.description)
        return self._keys
