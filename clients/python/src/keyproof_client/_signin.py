"""Sign in: ask for a challenge, check it, sign it, redeem it (specs/protocol.md §1);
refresh a DPoP session (§11).

The exchanges are written once, without I/O: :meth:`SignIn.flow` and
:meth:`SignIn.refresh` yield their requests and receive the answers, the way
``httpx.Auth.auth_flow`` does, so the same code runs inside
:class:`~keyproof_client.KeyproofAuth` on a sync or an async client and in :func:`sign_in`.

Before signing, the challenge text is parsed with keyproof's own parser for its family
and refused (``challenge_refused``) unless it names this key's account, the expected
domain (by default the issuer URL's host and port, which is keyproof's default), no
scope beyond those asked for (EIP-5573 ReCap) and, for a DPoP sign-in, this session's
DPoP key and no other (RFC 9278 thumbprint URI, §10.3): a signature is a grant, and the
client signs only what it asked for, whoever answered.

With a :class:`~keyproof_client._dpop.DPoPKey`, every token request carries a proof for
``POST <issuer>/v1/token`` (the metadata's ``token_endpoint``); a ``400 use_dpop_nonce``
is answered once with a new proof carrying the nonce (RFC 9449 §8), and the answer must
be a ``DPoP`` token, with a refresh token when the issuer opens a session.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

import httpx
from keyproof.accounts import family_for_message
from keyproof.dpop import named_jkts
from keyproof.errors import KeyproofError
from keyproof.jwks import check_url
from keyproof.messages import recap
from keyproof.tokens import MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME

from keyproof_client._dpop import DPoPKey, ServerNonces, token_endpoint_asks_for_nonce
from keyproof_client._errors import KeyproofClientError
from keyproof_client._keys import Key

logger = logging.getLogger("keyproof_client")

_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)  # RFC 6750 b64token and then some
MAX_REFRESH_TOKEN_CHARS: Final = 1024
SESSION_ENDED: Final = frozenset(
    {"refresh_token_invalid", "refresh_token_reused", "session_expired", "session_revoked"}
)
"""``invalid_grant`` reasons of a refresh after which only a new sign-in helps (§11)."""
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token from ``POST /v1/token``; ``repr`` never shows ``access_token`` nor
    ``refresh_token``. A ``DPoP`` token is usable only with proofs of its session's key."""

    access_token: str = field(repr=False)
    token_type: str
    scope: str
    expires_in: int
    obtained_at: float
    """The client's clock when the token was asked for: ``exp`` is no earlier."""
    refresh_token: str | None = field(default=None, repr=False)
    """The session's single-use refresh token (DPoP sign-ins only), if the issuer gave one."""

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in

    def renew_at(self, renew_before: float) -> float:
        """When to renew: ``renew_before`` seconds before expiry, or at half its life."""
        return self.expires_at - min(renew_before, self.expires_in / 2)

    def authorization(self) -> str:
        """The ``Authorization`` header value (RFC 6750 §2.1, RFC 9449 §7.1)."""
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

    @property
    def token_endpoint(self) -> str:
        """Where tokens are asked for, and the ``htu`` of their proofs: the metadata's
        ``token_endpoint``, since the issuer URL is the issuer's own name (§10.2)."""
        return self.issuer + "/v1/token"

    def flow(
        self,
        *,
        clock: Clock,
        extensions: Mapping[str, Any],
        dpop: DPoPKey | None = None,
        nonces: ServerNonces | None = None,
    ) -> SignInFlow:
        """Challenge, check, sign, redeem: yields each request, returns the token.

        With ``dpop`` the sign-in is bound to that key and the token is a ``DPoP`` one;
        ``nonces`` keeps what the issuer hands out for the next proof.
        """
        jkt = None if dpop is None else dpop.jkt
        answer = yield self._post("/v1/challenge", self._challenge_body(jkt), extensions)
        message = _string(_json_answer(answer, 201), "message")
        self.check(message, dpop_jkt=jkt)
        signed = {"message": message, "signature": self.key.sign(message)}
        obtained_at = clock()
        answer = yield from self._token_exchange(signed, dpop, nonces or ServerNonces(), extensions)
        token = _access_token(_json_answer(answer, 200), obtained_at, dpop=dpop is not None)
        logger.debug(
            "signed in as %s (%s) with scope %r for %d s",
            self.account,
            token.token_type,
            token.scope,
            token.expires_in,
        )
        return token

    def refresh(
        self,
        refresh_token: str,
        dpop: DPoPKey,
        *,
        nonces: ServerNonces,
        clock: Clock,
        extensions: Mapping[str, Any],
    ) -> Generator[httpx.Request, httpx.Response, AccessToken | None]:
        """The session's next token for its single-use ``refresh_token`` (RFC 6749 §6),
        proved with the session's ``dpop`` key; ``None`` when the session has ended
        (:data:`SESSION_ENDED`) and only a new sign-in helps. Other refusals raise."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        obtained_at = clock()
        answer = yield from self._token_exchange(form, dpop, nonces, extensions, form=True)
        if answer.status_code == 400:
            refused = KeyproofClientError.from_response(answer)
            if refused.code in SESSION_ENDED:
                logger.debug("the session of %s ended: %s", self.account, refused.code)
                return None
        token = _access_token(_json_answer(answer, 200), obtained_at, dpop=True)
        logger.debug("refreshed the token of %s for %d s", self.account, token.expires_in)
        return token

    def check(self, text: str, *, dpop_jkt: str | None = None) -> None:
        """Raise ``challenge_refused`` unless ``text`` is what this sign-in asked for,
        bound to the DPoP key ``dpop_jkt`` names, or to none without one."""
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
        if named_jkts(message.resources) != ([] if dpop_jkt is None else [dpop_jkt]):
            raise _refused("it does not bind the sign-in to this session's DPoP key alone")

    def _challenge_body(self, dpop_jkt: str | None) -> dict[str, str]:
        body = {"account": self.account}
        if self.scopes:
            body["scope"] = " ".join(sorted(self.scopes))
        if self.audience is not None:
            body["audience"] = self.audience
        if dpop_jkt is not None:
            body["dpop_jkt"] = dpop_jkt
        return body

    def _token_exchange(
        self,
        body: Mapping[str, str],
        dpop: DPoPKey | None,
        nonces: ServerNonces,
        extensions: Mapping[str, Any],
        *,
        form: bool = False,
    ) -> Generator[httpx.Request, httpx.Response, httpx.Response]:
        """``POST /v1/token``, sent once more with a new proof carrying the nonce if the
        issuer asks for one (RFC 9449 §8); the answer's nonce is kept either way."""
        answer = yield self._token_request(body, dpop, nonces, extensions, form)
        nonces.remember(answer)
        if dpop is not None and token_endpoint_asks_for_nonce(answer):
            logger.debug("the issuer asks for a DPoP nonce; sending the request again")
            answer = yield self._token_request(body, dpop, nonces, extensions, form)
            nonces.remember(answer)
        return answer

    def _token_request(
        self,
        body: Mapping[str, str],
        dpop: DPoPKey | None,
        nonces: ServerNonces,
        extensions: Mapping[str, Any],
        form: bool,
    ) -> httpx.Request:
        headers = {}
        if dpop is not None:
            url = httpx.URL(self.token_endpoint)
            headers["DPoP"] = dpop.proof("POST", url, now=time.time(), nonce=nonces.for_url(url))
        return self._post("/v1/token", body, extensions, headers=headers, form=form)

    def _post(
        self,
        path: str,
        body: Mapping[str, str],
        extensions: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        form: bool = False,
    ) -> httpx.Request:
        """A JSON request, or an RFC 6749 form (``application/x-www-form-urlencoded``)."""
        url = self.issuer + path
        sent = {"Accept": "application/json", **(headers or {})}
        options: dict[str, Any] = {"headers": sent, "extensions": dict(extensions)}
        if form:
            return httpx.Request("POST", url, data=dict(body), **options)
        return httpx.Request("POST", url, json=body, **options)


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


def _access_token(body: Mapping[str, object], obtained_at: float, *, dpop: bool) -> AccessToken:
    """The token answer, checked: a ``DPoP`` token (and refresh token) when a proof was sent."""
    token, token_type = _string(body, "access_token"), _string(body, "token_type")
    expires_in, scope = body.get("expires_in"), body.get("scope", "")
    expected = "DPoP" if dpop else "Bearer"
    if not (len(token) <= MAX_TOKEN_BYTES and _TOKEN_RE.fullmatch(token)):
        raise _unexpected("the access token is not a bearer token")
    if token_type.lower() != expected.lower():  # RFC 6749 §5.1: case-insensitive
        raise _unexpected(f"token_type {token_type[:20]!r} is not {expected}")
    if type(expires_in) is not int or not 0 < expires_in <= MAX_TOKEN_LIFETIME:
        raise _unexpected(f"expires_in must be 1..{MAX_TOKEN_LIFETIME} seconds")
    if not isinstance(scope, str):
        raise _unexpected("scope is not a string")
    refresh_token = body.get("refresh_token") if dpop else None
    if refresh_token is not None and not _is_refresh_token(refresh_token):
        raise _unexpected("the refresh token is not a token")
    return AccessToken(token, expected, scope, expires_in, obtained_at, refresh_token)


def _is_refresh_token(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and len(value) <= MAX_REFRESH_TOKEN_CHARS
        and _TOKEN_RE.fullmatch(value) is not None
    )


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
    """Sign in once and return a bearer token (for scripts and the command line).

    ``client`` (default: a new one) carries timeouts, proxies and TLS settings. To
    call an API with a DPoP-bound session and renewal, use
    :class:`~keyproof_client.KeyproofAuth` instead.
    """
    target = SignIn.build(issuer, key, scope=scope, audience=audience, domain=domain, chain=chain)
    with httpx.Client() if client is None else contextlib.nullcontext(client) as http:
        extensions = {"timeout": http.timeout.as_dict()}
        return run_flow(http, target.flow(clock=time.time, extensions=extensions))
