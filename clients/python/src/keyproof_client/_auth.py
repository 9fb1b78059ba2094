"""``KeyproofAuth``: an ``httpx.Auth`` that signs in with a local key and keeps a token.

On a request it attaches the current token, signing in first when there is none or
the one it has is about to expire (``renew_before`` seconds before, or at half its
life if that is sooner). When the server answers 401 (the token was revoked, or
expired by the server's clock) it signs in again and sends the request once more, if
its body can be sent twice (a streamed upload cannot: its 401 is returned).

The sign-in requests go through the same client (its transport, timeouts, proxies and
TLS settings) as steps of the auth flow (httpx ``Auth.auth_flow``), so they appear in
``response.history``. Requests sharing one ``KeyproofAuth`` sign in once: a sync
client's threads wait on a thread lock, an async client's tasks on a task lock, each
held only while a sign-in runs. (A sync and an async client sharing one auth may each
sign in once.)

Sender-constrained tokens (DPoP, RFC 9449) fit the same places: the header
:meth:`KeyproofAuth._authorized` writes and the renewal in :meth:`KeyproofAuth._renewal`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import anyio
import httpx

from keyproof_client._errors import KeyproofClientError
from keyproof_client._keys import Key
from keyproof_client._signin import AccessToken, Clock, SignIn, SignInFlow

logger = logging.getLogger("keyproof_client")

RENEW_BEFORE = 30.0
"""Seconds before expiry at which a token is renewed (at most half its lifetime)."""


class KeyproofAuth(httpx.Auth):
    """Sign in to keyproof at ``issuer`` with ``key`` and attach the token to requests.

    ``scope``: the scopes to ask for (a space-separated string or a list);
    ``audience``: the token audience, if not the issuer's default; ``domain``: the
    domain the issuer writes into challenges, if not the issuer URL's host and port;
    ``chain``: the CAIP-2 chain of an Ethereum or Solana account (``eip155:8453``);
    ``clock``: seconds since the epoch, for the renewal decision.
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
    ) -> None:
        if not renew_before >= 0:  # also refuses NaN
            raise KeyproofClientError("invalid_setting", "renew_before must be >= 0 seconds")
        self._sign_in = SignIn.build(
            issuer, key, scope=scope, audience=audience, domain=domain, chain=chain
        )
        self._renew_before = renew_before
        self._clock = clock
        self._token: AccessToken | None = None
        self._thread_lock = threading.Lock()
        self._task_lock = anyio.Lock()

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
        return self._token

    def __repr__(self) -> str:
        scope = " ".join(sorted(self._sign_in.scopes))
        return f"KeyproofAuth(issuer={self.issuer!r}, account={self.account!r}, scope={scope!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        stale: AccessToken | None = None
        while True:
            with self._thread_lock:
                token = yield from _read_answers(self._renewal(request, stale))
            response = yield self._authorized(request, token)
            if stale is not None or not _retry(request, response):
                return
            stale = token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        stale: AccessToken | None = None
        while True:
            async with self._task_lock:
                renewal = self._renewal(request, stale)
                try:  # async generators cannot ``yield from``: drive the flow here
                    step = next(renewal)
                    while True:
                        answer = yield step
                        await answer.aread()
                        step = renewal.send(answer)
                except StopIteration as done:
                    token = done.value
            response = yield self._authorized(request, token)
            if stale is not None or not _retry(request, response):
                return
            stale = token

    def _renewal(self, request: httpx.Request, stale: AccessToken | None) -> SignInFlow:
        """The current token, or a new one if it is missing, ``stale`` or due for renewal.

        Runs under the lock: a request that waited finds the token another one got.
        """
        token = self._token
        if token is not None and token is not stale and not self._due(token):
            return token
        if token is not None:
            logger.debug("renewing the token of %s", self.account)
        extensions = _timeout_of(request)
        token = yield from self._sign_in.flow(clock=self._clock, extensions=extensions)
        self._token = token
        return token

    def _due(self, token: AccessToken) -> bool:
        return self._clock() >= token.renew_at(self._renew_before)

    def _authorized(self, request: httpx.Request, token: AccessToken) -> httpx.Request:
        request.headers["Authorization"] = token.authorization()
        return request


def _read_answers(flow: SignInFlow) -> Generator[httpx.Request, httpx.Response, AccessToken]:
    """Pass a sign-in flow's requests to a sync client, reading each answer's body."""
    try:
        step = next(flow)
        while True:
            answer = yield step
            answer.read()
            step = flow.send(answer)
    except StopIteration as done:
        token: AccessToken = done.value
        return token


def _retry(request: httpx.Request, response: httpx.Response) -> bool:
    """A 401 for a request whose body is held in memory, so it can be sent again."""
    if response.status_code != 401 or not isinstance(request.stream, httpx.ByteStream):
        return False
    logger.debug("%s answered 401; signing in again", request.url.host)
    return True


def _timeout_of(request: httpx.Request) -> dict[str, Any]:
    """The sign-in requests get the client's timeouts, as the request they serve did."""
    timeout = request.extensions.get("timeout")
    return {} if timeout is None else {"timeout": timeout}
