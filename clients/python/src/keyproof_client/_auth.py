"""``KeyproofAuth``: an ``httpx.Auth`` that signs in with a local key and keeps a session.

On a request it attaches the current token, renewing it first when there is none or
the one it has is about to expire (``renew_before`` seconds before, or at half its
life if that is sooner). When the server answers 401 (the token was revoked, or
expired by the server's clock) it renews and sends the request once more, if its body
can be sent twice (a streamed upload cannot: its 401 is returned).

By default the session is sender-constrained (DPoP, RFC 9449; specs/protocol.md §10,
§11): each sign-in makes a new key held only in memory, binds the challenge to it
(``dpop_jkt``), and gets a ``DPoP`` token and a refresh token. Every request then carries
``Authorization: DPoP <token>`` and a fresh proof for its method and URL. Renewal
trades the single-use refresh token for a new pair, proved by the same key, and signs
in again only when the issuer says the session has ended (expired, revoked, idle, or a
refresh token came back twice). A server that asks for a DPoP nonce (``use_dpop_nonce``)
gets the request again, once, with a proof carrying it; the latest nonce of each server
is kept for the next proof. ``dpop=False`` keeps plain bearer tokens and full sign-ins.

The sign-in and refresh requests go through the same client (its transport, timeouts,
proxies and TLS settings) as steps of the auth flow (httpx ``Auth.auth_flow``), so they
appear in ``response.history``. Renewals never overlap: the threads and tasks sharing one
auth take one lock (:class:`~keyproof_client._lock.RenewalLock`), held only while a
renewal runs, and whoever waited finds the token the renewal got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from keyproof_client._dpop import (
    DPoPAlgorithm,
    DPoPKey,
    ServerNonces,
    checked_algorithm,
    resource_asks_for_nonce,
)
from keyproof_client._errors import KeyproofClientError
from keyproof_client._keys import Key
from keyproof_client._lock import RenewalLock
from keyproof_client._signin import AccessToken, Clock, SignIn

logger = logging.getLogger("keyproof_client")

RENEW_BEFORE = 30.0
"""Seconds before expiry at which a token is renewed (at most half its lifetime)."""
Resend = Literal["nonce", "renewed"]


@dataclass(frozen=True, slots=True)
class _Session:
    """A token and the DPoP key it is bound to (``None`` for a bearer token)."""

    token: AccessToken
    dpop: DPoPKey | None


Renewal = Generator[httpx.Request, httpx.Response, _Session]


class KeyproofAuth(httpx.Auth):
    """Sign in to keyproof at ``issuer`` with ``key`` and attach the token to requests.

    ``scope``: the scopes to ask for (a space-separated string or a list);
    ``audience``: the token audience, if not the issuer's default; ``domain``: the
    domain the issuer writes into challenges, if not the issuer URL's host and port;
    ``chain``: the CAIP-2 chain of an Ethereum or Solana account (``eip155:8453``);
    ``clock``: seconds since the epoch, for the renewal decision (proofs carry the wall
    clock, which the issuer checks); ``dpop``: bind the session to an in-memory key
    (default) or use bearer tokens; ``dpop_alg``: ``ES256`` (default) or ``Ed25519``.
    """

    def __init__(
        self,
        issuer: str,
        key: Key,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | None = None,
        domain: str | None = None,
        chain: str | None = None,
        renew_before: float = RENEW_BEFORE,
        clock: Clock = time.time,
        dpop: bool = True,
        dpop_alg: DPoPAlgorithm = "ES256",
    ) -> None:
        if not renew_before >= 0:  # also refuses NaN
            raise KeyproofClientError("invalid_setting", "renew_before must be >= 0 seconds")
        alg = checked_algorithm(dpop_alg)
        self._sign_in = SignIn.build(
            issuer, key, scope=scope, audience=audience, domain=domain, chain=chain
        )
        self._renew_before = renew_before
        self._clock = clock
        self._dpop_alg: DPoPAlgorithm | None = alg if dpop else None
        self._session: _Session | None = None
        self._nonces = ServerNonces()
        self._lock = RenewalLock()

    @property
    def issuer(self) -> str:
        return self._sign_in.issuer

    @property
    def account(self) -> str:
        """The account id the key signs in as (the token ``sub``)."""
        return self._sign_in.account

    @property
    def token(self) -> AccessToken | None:
        """The token attached to requests now, if signed in."""
        return None if self._session is None else self._session.token

    def __repr__(self) -> str:
        scope = " ".join(sorted(self._sign_in.scopes))
        return (
            f"KeyproofAuth(issuer={self.issuer!r}, account={self.account!r}, "
            f"scope={scope!r}, dpop={self._dpop_alg!r})"
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        stale: AccessToken | None = None
        resent: set[Resend] = set()
        while True:
            with self._lock.held():
                session = yield from _read_answers(self._renewal(request, stale))
            response = yield self._authorized(request, session)
            why = self._resend(request, response, session, resent)
            if why is None:
                return
            resent.add(why)
            stale = session.token if why == "renewed" else stale

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        stale: AccessToken | None = None
        resent: set[Resend] = set()
        while True:
            async with self._lock.held_by_task():
                renewal = self._renewal(request, stale)
                try:  # async generators cannot ``yield from``: drive the flow here
                    step = next(renewal)
                    while True:
                        answer = yield step
                        await answer.aread()
                        step = renewal.send(answer)
                except StopIteration as done:
                    session: _Session = done.value
            response = yield self._authorized(request, session)
            why = self._resend(request, response, session, resent)
            if why is None:
                return
            resent.add(why)
            stale = session.token if why == "renewed" else stale

    def _renewal(self, request: httpx.Request, stale: AccessToken | None) -> Renewal:
        """The current session, or a renewed one if it is missing, ``stale`` or due.

        Runs under the lock: a request that waited finds the session another one got.
        """
        session = self._session
        if session is not None and not self._due(session.token, stale):
            return session
        extensions = _timeout_of(request)
        if session is not None and session.dpop is not None and session.token.refresh_token:
            token = yield from self._sign_in.refresh(
                session.token.refresh_token,
                session.dpop,
                nonces=self._nonces,
                clock=self._clock,
                extensions=extensions,
            )
            if token is not None:
                self._session = _Session(token, session.dpop)
                return self._session
        if session is not None:
            logger.debug("signing in again as %s", self.account)
        dpop = None if self._dpop_alg is None else DPoPKey(self._dpop_alg)
        token = yield from self._sign_in.flow(
            clock=self._clock, extensions=extensions, dpop=dpop, nonces=self._nonces
        )
        self._session = _Session(token, dpop)
        return self._session

    def _due(self, token: AccessToken, stale: AccessToken | None) -> bool:
        refused = stale is not None and token.access_token == stale.access_token
        return refused or self._clock() >= token.renew_at(self._renew_before)

    def _authorized(self, request: httpx.Request, session: _Session) -> httpx.Request:
        token = session.token
        request.headers["Authorization"] = token.authorization()
        if session.dpop is not None:
            request.headers["DPoP"] = session.dpop.proof(
                request.method,
                request.url,
                now=time.time(),
                access_token=token.access_token,
                nonce=self._nonces.for_url(request.url),
            )
        return request

    def _resend(
        self,
        request: httpx.Request,
        response: httpx.Response,
        session: _Session,
        resent: set[Resend],
    ) -> Resend | None:
        """Why to send ``request`` again, each reason once: the server asked for a DPoP
        nonce (RFC 9449 §9), or refused the token (401), if the body can be sent twice."""
        if session.dpop is not None:
            self._nonces.remember(response)
        if not isinstance(request.stream, httpx.ByteStream):
            return None
        if "nonce" not in resent and session.dpop is not None and resource_asks_for_nonce(response):
            logger.debug("%s asks for a DPoP nonce; sending again", request.url.host)
            return "nonce"
        if "renewed" not in resent and response.status_code == 401:
            logger.debug("%s answered 401; renewing the token", request.url.host)
            return "renewed"
        return None


def _read_answers(renewal: Renewal) -> Renewal:
    """Pass a renewal's requests to a sync client, reading each answer's body."""
    try:
        step = next(renewal)
        while True:
            answer = yield step
            answer.read()
            step = renewal.send(answer)
    except StopIteration as done:
        session: _Session = done.value
        return session


def _timeout_of(request: httpx.Request) -> dict[str, Any]:
    """The sign-in requests get the client's timeouts, as the request they serve did."""
    timeout = request.extensions.get("timeout")
    return {} if timeout is None else {"timeout": timeout}
