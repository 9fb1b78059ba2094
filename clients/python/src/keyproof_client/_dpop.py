"""DPoP (RFC 9449) on the client: a key held in memory for one session, its proofs, and
the nonces servers hand out.

A :class:`DPoPKey` is made for one session and lives only in this process: it is never
written, logged or shown (its ``repr`` names the algorithm and the public thumbprint).
Each request it authorizes gets a fresh proof (RFC 9449 §4.2): ``typ: dpop+jwt``, the
public ``jwk``, and the claims ``jti`` (144 random bits), ``htm``, ``htu`` (the request
URL without query and fragment), ``iat`` (the wall clock, which the server checks),
``ath`` (the hash of the access token presented with it) and ``nonce`` when the server
gave one. Proofs are compact JWS made by keyproof's own :func:`keyproof.jose.sign_compact`
(``ES256`` as ``R ‖ S``, or ``Ed25519``).

:class:`ServerNonces` keeps the latest ``DPoP-Nonce`` each server sent (RFC 9449 §8 at
the token endpoint, §9 at a resource server): a nonce belongs to the server that issued
it, so they are kept by origin.
"""

from __future__ import annotations

import re
import secrets
import threading
from typing import Final, Literal, get_args

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from keyproof import jose
from keyproof.dpop import DPOP_TYPE, access_token_hash, normalized_htu

from keyproof_client._errors import KeyproofClientError

DPoPAlgorithm = Literal["ES256", "Ed25519"]
DPOP_ALGORITHMS: Final[tuple[DPoPAlgorithm, ...]] = get_args(DPoPAlgorithm)
_NONCE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,1024}", re.ASCII)  # RFC 9449 §8 NQCHAR
_ASKS_FOR_NONCE: Final = re.compile(r'\berror\s*=\s*"?use_dpop_nonce\b', re.ASCII)
_MAX_SERVERS: Final = 64
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class DPoPKey:
    """A per-session proof-of-possession key: ``ES256`` (P-256) or ``Ed25519``."""

    def __init__(self, alg: DPoPAlgorithm = "ES256") -> None:
        private: ec.EllipticCurvePrivateKey | Ed25519PrivateKey
        if checked_algorithm(alg) == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = Ed25519PrivateKey.generate()
        self.alg: DPoPAlgorithm = alg
        self._private = private
        self._jwk = jose.public_jwk(private.public_key())
        self.jkt = jose.jwk_thumbprint(private.public_key())
        """RFC 7638 thumbprint of the public key: what tokens and sign-ins are bound to."""

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    def proof(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        now: float,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A proof for one ``method`` request to ``url`` at ``now`` (seconds since the epoch)."""
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(18),
            "htm": method,
            "htu": htu(url),
            "iat": int(now),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": DPOP_TYPE, "alg": self.alg, "jwk": self._jwk}
        return jose.sign_compact(header, claims, self._private)


def checked_algorithm(alg: str) -> DPoPAlgorithm:
    """``alg`` if the client makes proofs with it, else ``invalid_setting``."""
    for known in DPOP_ALGORITHMS:
        if alg == known:
            return known
    raise KeyproofClientError("invalid_setting", f"dpop_alg must be one of {DPOP_ALGORITHMS}")


def htu(url: httpx.URL | str) -> str:
    """The request URL a proof names: without query and fragment (RFC 9449 §4.2), in
    the normal form verifiers compare (RFC 3986 §6.2.2-6.2.3), as keyproof does."""
    # httpx percent-encodes the URL, so the first "?" or "#" ends the path; cutting the
    # text is far cheaper than building a new URL.
    target = str(httpx.URL(url)).partition("#")[0].partition("?")[0]
    return normalized_htu(target) or target


class ServerNonces:
    """The latest valid ``DPoP-Nonce`` each server (origin) sent; at most 64 servers."""

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerNonces({len(self._latest)} servers)"

    def for_url(self, url: httpx.URL) -> str | None:
        """The nonce to put in the next proof for a request to ``url``."""
        return self._latest.get(_origin(url))

    def remember(self, response: httpx.Response) -> None:
        """Keep the response's ``DPoP-Nonce`` (on any status) for its server's next proof."""
        nonce = nonce_of(response)
        if nonce is None:
            return
        origin = _origin(response.request.url)
        with self._lock:
            self._latest.pop(origin, None)
            if len(self._latest) >= _MAX_SERVERS:  # forget the server heard from longest ago
                del self._latest[next(iter(self._latest))]
            self._latest[origin] = nonce


def nonce_of(response: httpx.Response) -> str | None:
    """The response's ``DPoP-Nonce`` if it is one (RFC 9449 §8 ``1*NQCHAR``)."""
    value = response.headers.get("dpop-nonce")
    return value if value is not None and _NONCE.fullmatch(value) else None


def token_endpoint_asks_for_nonce(answer: httpx.Response) -> bool:
    """A token endpoint's ``400 use_dpop_nonce`` with a nonce (RFC 9449 §8); body read."""
    if answer.status_code != 400 or nonce_of(answer) is None:
        return False
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"


def resource_asks_for_nonce(response: httpx.Response) -> bool:
    """A resource server's ``401`` with ``DPoP error="use_dpop_nonce"`` (RFC 9449 §9)."""
    if response.status_code != 401 or nonce_of(response) is None:
        return False
    challenge = response.headers.get("www-authenticate", "")
    return "DPoP" in challenge and bool(_ASKS_FOR_NONCE.search(challenge))


def _origin(url: httpx.URL) -> str:
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    return f"{url.scheme}://{url.host}:{port}"
