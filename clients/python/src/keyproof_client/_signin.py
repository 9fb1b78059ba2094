"""Sign in: ask for a challenge, check it, sign it, redeem it (specs/protocol.md §1).

The exchange is written once, without I/O: :meth:`SignIn.flow` yields the two
requests and receives their answers, the way ``httpx.Auth.auth_flow`` does, so the
same code runs inside :class:`~keyproof_client.KeyproofAuth` on a sync or an async
client and in :func:`sign_in`.

Before signing, the challenge text is parsed with keyproof's own parser for its family
and refused (``challenge_refused``) unless it names this key's account, the expected
domain (by default the issuer URL's host and port, which is keyproof's default) and
no scope beyond those asked for (EIP-5573 ReCap): a signature is a grant, and the
client signs only what it asked for, whoever answered.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from keyproof.accounts import family_for_message
from keyproof.errors import KeyproofError
from keyproof.jwks import check_url
from keyproof.messages import recap
from keyproof.tokens import MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME

from keyproof_client._errors import KeyproofClientError
from keyproof_client._keys import Key

logger = logging.getLogger("keyproof_client")

_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)  # RFC 6750 b64token and then some
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token from ``POST /v1/token``; ``repr`` never shows ``access_token``."""

    access_token: str = field(repr=False)
    token_type: str
    scope: str
    expires_in: int
    obtained_at: float
    """The client's clock when the token was asked for: ``exp`` is no earlier."""

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in

    def renew_at(self, renew_before: float) -> float:
        """When to renew: ``renew_before`` seconds before expiry, or at half its life."""
        return self.expires_at - min(renew_before, self.expires_in / 2)

    def authorization(self) -> str:
        """The ``Authorization`` header value (RFC 6750 §2.1)."""
        return f"{self.token_type} {self.access_token}"


SignInFlow = Generator[httpx.Request, httpx.Response, AccessToken]


@dataclass(frozen=True, slots=True)
class SignIn:
    """Who signs in (``key``, ``account``), where (``issuer``) and for what."""

    issuer: str
    key: Key
    account: str
    scopes: frozenset[str]
    audience: str | None
    domain: str

    @classmethod
    def build(
        cls,
        issuer: str,
        key: Key,
        *,
        scope: str | Iterable[str] | None,
        audience: str | None,
        domain: str | None,
        chain: str | None,
    ) -> SignIn:
        try:
            check_url(issuer, "issuer")
        except KeyproofError as refused:
            raise KeyproofClientError.relay(refused) from None
        words = scope.split() if isinstance(scope, str) else list(scope or ())
        return cls(
            issuer=issuer.rstrip("/"),
            key=key,
            account=key.account(chain),
            scopes=frozenset(words),
            audience=audience,
            domain=domain or urlsplit(issuer).netloc,
        )

    def flow(self, *, clock: Clock, extensions: Mapping[str, Any]) -> SignInFlow:
        """Challenge, check, sign, redeem: yields each request, returns the token."""
        answer = yield self._post("/v1/challenge", self._challenge_body(), extensions)
        message = _string(_json_answer(answer, 201), "message")
        self.check(message)
        signed = {"message": message, "signature": self.key.sign(message)}
        obtained_at = clock()
        answer = yield self._post("/v1/token", signed, extensions)
        token = _access_token(_json_answer(answer, 200), obtained_at)
        logger.debug(
            "signed in as %s with scope %r for %d s", self.account, token.scope, token.expires_in
        )
        return token

    def check(self, text: str) -> None:
        """Raise ``challenge_refused`` unless ``text`` is what this sign-in asked for."""
        try:
            message, account = family_for_message(text).parse(text)
            capability = recap.signed_capability(message.statement, message.resources)
        except KeyproofError as refused:
            raise _refused(f"it does not parse ({refused.code})") from None
        if account.id != self.account:
            raise _refused(f"it names another account, {account.id}")
        if message.domain != self.domain:
            raise _refused(f"it is for {message.domain!r}, not {self.domain!r}")
        granted = capability.attenuations if capability else {}
        abilities = {ability for target in granted.values() for ability in target}
        unasked = sorted(a for a in abilities if a.replace("/", ":", 1) not in self.scopes)
        if unasked:
            raise _refused(f"it grants what was not asked: {', '.join(unasked)[:100]}")
        if self.audience is not None and granted and set(granted) != {self.audience}:
            raise _refused(f"it grants to another audience than {self.audience}")

    def _challenge_body(self) -> dict[str, str]:
        body = {"account": self.account}
        if self.scopes:
            body["scope"] = " ".join(sorted(self.scopes))
        if self.audience is not None:
            body["audience"] = self.audience
        return body

    def _post(self, path: str, body: object, extensions: Mapping[str, Any]) -> httpx.Request:
        headers = {"Accept": "application/json"}
        url = self.issuer + path
        return httpx.Request("POST", url, json=body, headers=headers, extensions=dict(extensions))


def _refused(why: str) -> KeyproofClientError:
    return KeyproofClientError("challenge_refused", f"not signing the challenge: {why}")


def _unexpected(what: str) -> KeyproofClientError:
    return KeyproofClientError("unexpected_response", what)


def _json_answer(response: httpx.Response, status: int) -> dict[str, object]:
    if response.status_code != status:
        if response.is_success:
            raise _unexpected(f"{response.url.path} answered {response.status_code}")
        raise KeyproofClientError.from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise _unexpected(f"{response.url.path} answered no JSON") from None
    if not isinstance(body, dict):
        raise _unexpected(f"{response.url.path} answered no JSON object")
    return body


def _string(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _unexpected(f"the answer has no {name}")
    return value


def _access_token(body: Mapping[str, object], obtained_at: float) -> AccessToken:
    token, token_type = _string(body, "access_token"), _string(body, "token_type")
    expires_in, scope = body.get("expires_in"), body.get("scope", "")
    if not (len(token) <= MAX_TOKEN_BYTES and _TOKEN_RE.fullmatch(token)):
        raise _unexpected("the access token is not a bearer token")
    if token_type.lower() != "bearer":  # RFC 6749 §5.1: case-insensitive
        raise _unexpected(f"token_type {token_type[:20]!r} is not Bearer")
    if type(expires_in) is not int or not 0 < expires_in <= MAX_TOKEN_LIFETIME:
        raise _unexpected(f"expires_in must be 1..{MAX_TOKEN_LIFETIME} seconds")
    if not isinstance(scope, str):
        raise _unexpected("scope is not a string")
    return AccessToken(token, "Bearer", scope, expires_in, obtained_at)


def run_flow(client: httpx.Client, flow: SignInFlow) -> AccessToken:
    """Drive a sign-in flow on a sync client, outside any auth of the client."""
    request = next(flow)
    while True:
        answer = client.send(request, auth=None)
        try:
            request = flow.send(answer)
        except StopIteration as done:
            token: AccessToken = done.value
            return token


def sign_in(
    issuer: str,
    key: Key,
    *,
    scope: str | Iterable[str] | None = None,
    audience: str | None = None,
    domain: str | None = None,
    chain: str | None = None,
    client: httpx.Client | None = None,
) -> AccessToken:
    """Sign in once and return the token (for scripts and the command line).

    ``client`` (default: a new one) carries timeouts, proxies and TLS settings. To
    call an API with renewal, use :class:`~keyproof_client.KeyproofAuth` instead.
    """
    target = SignIn.build(issuer, key, scope=scope, audience=audience, domain=domain, chain=chain)
    with httpx.Client() if client is None else contextlib.nullcontext(client) as http:
        extensions = {"timeout": http.timeout.as_dict()}
        return run_flow(http, target.flow(clock=time.time, extensions=extensions))
