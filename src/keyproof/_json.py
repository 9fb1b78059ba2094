"""Strict JSON for untrusted bytes (request bodies and token segments), and the compact
encoding of what keyproof writes itself (:func:`dumps_compact`).

Refused, each as ``ValueError`` for the caller to turn into its own error:

* anything but UTF-8 (RFC 8259 §8.1). ``json.loads`` on bytes would guess UTF-16 or
  UTF-32, and a byte-level scan (the depth check below) would misread them;
* a repeated member name at any depth (RFC 7493 §2.3): Python keeps the last one,
  other parsers the first, so two readers could see two different documents;
* ``NaN`` and ``Infinity``, which are not JSON (RFC 8259 §6);
* nesting deeper than ``max_depth``, found before ``json.loads`` recurses.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "NestedTooDeeply", "dumps_compact", "loads_strict"]

MAX_JSON_DEPTH = 8


class NestedTooDeeply(ValueError):
    """The document nests arrays or objects deeper than allowed."""


def loads_strict(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse UTF-8 JSON ``data`` strictly; ``ValueError`` (or a subclass) for anything else."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    brackets = text.count("[") + text.count("{")
    if brackets > max_depth and _nesting_depth(text) > max_depth:
        raise NestedTooDeeply(f"JSON nested deeper than {max_depth}")
    if text.startswith("\ufeff"):  # as json.loads refuses it
        raise ValueError("unexpected UTF-8 byte order mark")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise NestedTooDeeply("JSON nested too deeply") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call: ``json.loads`` with hooks would build a new one each time.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
# One encoder for every call: ``json.dumps`` with separators would build one each time.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def dumps_compact(value: Any) -> str:
    """``value`` as JSON with no spaces, non-ASCII escaped (audit lines, JWS segments)."""
    return _COMPACT.encode(value)


def _nesting_depth(text: str) -> int:
    """Maximum bracket depth outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
