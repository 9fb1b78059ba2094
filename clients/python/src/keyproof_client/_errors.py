"""The one error the client raises, with a stable ``code``.

Codes are keyproof's own (specs/protocol.md §7): the ``reason`` of an issuer's error
answer, or the code of a keyproof check run here (a chain the key cannot use is
``invalid_account``). The client adds its own for what only it can see:

- ``challenge_refused``: the issuer's challenge is not what was asked; nothing signed.
- ``unexpected_response``: the issuer answered outside keyproof's protocol.
- ``issuer_unreachable``: no answer from the issuer (the command line only).
- ``invalid_key``: a key file or variable that does not hold a valid key.
- ``key_not_found``: no key file can be read there, or the variable is not set.
- ``key_file_exposed``: the key file's group or others may access it.
- ``key_file_exists``: ``keygen`` refuses to overwrite a file.

Messages never hold a key, a signature or a token.
"""

from __future__ import annotations

import re
from typing import Final

import httpx
from keyproof.errors import KeyproofError

_MAX_DESCRIPTION: Final = 200
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")


class KeyproofClientError(Exception):
    """A failure with a stable ``code``; ``status`` is the issuer's HTTP status, if any."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"KeyproofClientError({self.code!r}, {self.description!r}, status={self.status})"

    @classmethod
    def relay(cls, error: KeyproofError) -> KeyproofClientError:
        """The same failure, found by a keyproof check run in the client."""
        return cls(error.code, error.description)

    @classmethod
    def from_response(cls, response: httpx.Response) -> KeyproofClientError:
        """An issuer's error answer: ``{"error", "reason", "error_description"}``."""
        body = _json_object(response)
        reason, description = body.get("reason"), body.get("error_description", "")
        if not isinstance(reason, str) or not isinstance(description, str):
            return cls(
                "unexpected_response",
                f"HTTP {response.status_code} without a keyproof reason",
                status=response.status_code,
            )
        return cls(
            printable(reason),
            printable(description),
            status=response.status_code,
            retry_after=_retry_after(response),
        )


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def printable(text: str) -> str:
    """One line of printable ASCII: what an issuer says is shown as data, never as control."""
    return _UNPRINTABLE.sub("?", text[:_MAX_DESCRIPTION])


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() and len(value) <= 6 else None
