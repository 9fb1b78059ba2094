"""HTTP pieces shared by the issuer and resource servers: bounded JSON bodies, access
credentials (RFC 6750 §2.1, RFC 9449 §7.1) and the error response shape of every endpoint."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse

from keyproof._json import MAX_JSON_DEPTH, NestedTooDeeply, loads_strict
from keyproof.errors import (
    DPoPNonceRequired,
    DPoPProofInvalid,
    InvalidRequest,
    KeyproofError,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)

__all__ = [
    "MAX_AUTHORIZATION_CHARS",
    "MAX_JSON_DEPTH",
    "CompactJSONResponse",
    "Credentials",
    "access_credentials",
    "dpop_proof",
    "error_body",
    "error_response",
    "is_form",
    "json_response",
    "read_form_or_json",
    "read_json_object",
    "string_field",
]

MAX_AUTHORIZATION_CHARS = 8200
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode
_SCHEMES: Final[dict[str, Literal["Bearer", "DPoP"]]] = {"bearer": "Bearer", "dpop": "DPoP"}


class CompactJSONResponse(JSONResponse):
    """Starlette's ``JSONResponse``, byte for byte, with one encoder made once: ``json.dumps``
    with options builds a new encoder on every call."""

    def render(self, content: Any) -> bytes:
        return _encode(content).encode("utf-8")


def json_response(body: Any, status: int = 200, *, no_store: bool = False) -> JSONResponse:
    return CompactJSONResponse(body, status_code=status, headers=NO_STORE if no_store else None)


def error_body(error: KeyproofError) -> dict[str, str]:
    """The OAuth error shape with keyproof's stable code as ``reason``."""
    return {
        "error": error.oauth_error,
        "reason": error.code,
        "error_description": error.description,
    }


def error_response(error: KeyproofError, *, status: int | None = None) -> JSONResponse:
    """:func:`error_body` as a JSON response, never cached, with ``Retry-After`` for 429/503
    and ``DPoP-Nonce`` for ``use_dpop_nonce``.

    ``status`` overrides the error's own where the protocol answers it differently (a
    resource server answers a bad DPoP proof ``401``, RFC 9449 §7.1).
    """
    body = error_body(error)
    headers = dict(NO_STORE)
    if isinstance(error, RateLimited | Unavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, DPoPNonceRequired):
        headers["DPoP-Nonce"] = error.nonce
    return CompactJSONResponse(body, status_code=status or error.status, headers=headers)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """Read and parse a JSON object body, refusing oversize, non-JSON and deep input."""
    if _media_type(request) != "application/json":
        raise UnsupportedMediaType("unsupported_media_type", "send application/json")
    return _parse_object(await _read_body(request, max_bytes))


async def read_form_or_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """An OAuth-style body: ``application/x-www-form-urlencoded`` (RFC 6749) or JSON.

    Form parameters may not repeat (RFC 6749 §3.1) and must be UTF-8.
    """
    media_type = _media_type(request)
    if media_type == "application/json":
        return await read_json_object(request, max_bytes)
    if media_type != FORM:
        raise UnsupportedMediaType("unsupported_media_type", f"send {FORM} or application/json")
    body = await _read_body(request, max_bytes)
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=32
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("invalid_field", "body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise InvalidRequest("invalid_field", "a form parameter is repeated")
    return form


def is_form(request: Request) -> bool:
    """Whether the body is ``application/x-www-form-urlencoded`` (an RFC 6749 request)."""
    return _media_type(request) == FORM


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise PayloadTooLarge("payload_too_large", f"body exceeds {max_bytes} bytes")
    # From receive directly: Request.stream()'s async generator costs more than a
    # one-message body takes to read.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge("payload_too_large", f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        value = loads_strict(body, max_depth=MAX_JSON_DEPTH)
    except NestedTooDeeply:
        raise InvalidRequest("invalid_json", "JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidRequest("invalid_json", "body is not UTF-8 (RFC 8259 §8.1)") from None
    except ValueError:
        raise InvalidRequest("invalid_json", "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("invalid_json", "body must be a JSON object")
    # JSON escapes can spell lone surrogates, which no later step could encode. Strict
    # UTF-8 cannot carry a surrogate, so only a body with a \u escape can hold one.
    if b"\\u" in body:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("invalid_json", "body holds invalid Unicode") from None
    return value


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string member of the body; missing or wrongly typed members are 400s."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest("missing_field", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest("invalid_field", f"{name} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access token and the scheme it came with: ``Bearer`` (RFC 6750) or ``DPoP``
    (RFC 9449 §7.1)."""

    scheme: Literal["Bearer", "DPoP"]
    token: str

    def __repr__(self) -> str:
        return f"Credentials(scheme={self.scheme!r})"


def access_credentials(conn: HTTPConnection) -> Credentials | None:
    """The token of the request's ``Authorization: Bearer`` or ``DPoP`` header.

    ``None`` when the request has no ``Authorization`` header or one of another scheme;
    ``InvalidRequest`` for a token in the query string (RFC 6750 §2.3 is not supported),
    two ``Authorization`` headers, an oversized header or an empty token.
    """
    if conn.scope.get("query_string") and "access_token" in conn.query_params:
        raise InvalidRequest("not_supported", "send the token in the Authorization header only")
    values = _header_values(conn, b"authorization")
    if len(values) > 1:
        raise InvalidRequest("invalid_field", "more than one Authorization header")
    if not values:
        return None
    if len(values[0]) > MAX_AUTHORIZATION_CHARS:
        raise InvalidRequest("invalid_field", "the Authorization header is too long")
    scheme, _, token = values[0].strip().partition(" ")
    canonical = _SCHEMES.get(scheme.lower())
    if canonical is None:
        return None
    token = token.strip()
    if not token:
        raise InvalidRequest("missing_field", f"empty {canonical} token")
    # The token's syntax is the token verifier's to judge.
    return Credentials(canonical, token)


def dpop_proof(conn: HTTPConnection) -> str | None:
    """The request's ``DPoP`` header; more than one is ``invalid_dpop_proof``."""
    proofs = _header_values(conn, b"dpop")
    if len(proofs) > 1:
        raise DPoPProofInvalid("invalid_dpop_proof", "send exactly one DPoP header")
    return proofs[0] if proofs else None


def _header_values(conn: HTTPConnection, name: bytes) -> list[str]:
    """Every value of header ``name`` (lower case), as Starlette's ``headers.getlist``
    gives them, read from the ASGI scope without building its ``Headers`` on each request
    of a guarded route."""
    return [value.decode("latin-1") for key, value in conn.scope["headers"] if key == name]
