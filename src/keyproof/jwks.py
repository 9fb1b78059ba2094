"""The issuer's public keys as a resource server sees them: one JWKS URL, cached.

Keys come only from the configured URL (https, or http to a loopback host), are kept
for ``max_age`` and re-fetched when a token names an unknown ``kid``, at most once per
``refresh_cooldown``. After a failed first fetch the same cooldown applies, so an issuer
outage does not turn every request into a fetch. Only Ed25519 signing keys are taken
(``alg`` ``Ed25519``, RFC 9864, or the older ``EdDSA``, or none).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyproof._time import Clock
from keyproof.crypto.encoding import parse_base64url
from keyproof.errors import ConfigurationError, Unavailable
from keyproof.jose import ED25519_ALGORITHMS
from keyproof.tokens import JWKS_MAX_AGE

__all__ = ["KID_PATTERN", "MAX_JWKS_BYTES", "MAX_JWKS_KEYS", "JWKSCache", "check_url", "parse_jwks"]

logger = logging.getLogger("keyproof.guard")
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 32
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


class JWKSCache:
    """The issuer's Ed25519 public keys, fetched from one configured URL only."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        refresh_cooldown: float = 30.0,
        max_age: float = JWKS_MAX_AGE,
    ) -> None:
        check_url(url, "jwks_url")
        self.url = url
        self.fetches = 0
        self._client = client
        self._clock = clock
        self._cooldown = refresh_cooldown
        self._max_age = max_age
        self._keys: dict[str, Ed25519PublicKey] | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    def _due(self, kid: str | None) -> bool:
        if self._checked_at is None:
            return True
        age = self._clock() - self._checked_at
        if self._keys is None:
            # The issuer was down on the last try: no fetch storm while it stays down.
            return age >= self._cooldown
        unknown = kid is not None and kid not in self._keys and KID_PATTERN.fullmatch(kid)
        return age >= self._max_age or (bool(unknown) and age >= self._cooldown)

    def fresh(self, kid: str | None = None) -> Mapping[str, Ed25519PublicKey] | None:
        """The cached keys when :meth:`keys` would return them without a fetch, else None."""
        return None if self._due(kid) else self._keys

    async def keys(self, kid: str | None = None) -> Mapping[str, Ed25519PublicKey]:
        """The cached keys, refreshed first if stale or if ``kid`` is new (rate limited)."""
        if self._due(kid):
            async with self._lock:
                if self._due(kid):
                    await self._refresh()
        if self._keys is None:
            raise Unavailable("upstream_unavailable", "the issuer's keys are unavailable")
        return self._keys

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"status {response.status_code}")
            self._keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we have; without any, keys() fails closed.
            logger.warning("JWKS refresh from %s failed: %s", self.url, type(exc).__name__)
        finally:
            # Marked checked only once done: callers arriving meanwhile wait on the lock
            # for this fetch's keys instead of being refused with none.
            self._checked_at = self._clock()


def parse_jwks(document: Any) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signing keys of a JWKS document; other key types are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in document["keys"][:MAX_JWKS_KEYS]:
        parsed = _ed25519_jwk(jwk)
        if parsed is not None:
            keys[parsed[0]] = parsed[1]
    return keys


def _ed25519_jwk(jwk: Any) -> tuple[str, Ed25519PublicKey] | None:
    if not isinstance(jwk, dict) or (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
        return None
    kid, x = jwk.get("kid"), jwk.get("x")
    alg = jwk.get("alg", "Ed25519")
    if not isinstance(alg, str) or alg not in ED25519_ALGORITHMS or jwk.get("use", "sig") != "sig":
        return None
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid) or not isinstance(x, str):
        return None
    raw = parse_base64url(x, max_length=32)
    if raw is None or len(raw) != 32:
        return None
    return kid, Ed25519PublicKey.from_public_bytes(raw)


def check_url(url: str, name: str) -> None:
    """An absolute https URL, or http to a loopback host only (keys and secrets in clear)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or not parts.hostname:
        raise ConfigurationError("invalid_setting", f"{name} must be an absolute https URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            "invalid_setting", f"{name} must use https unless its host is loopback"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
