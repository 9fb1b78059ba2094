"""Flat records kept in the store as compact JSON: a nonce's binding, a session."""

from __future__ import annotations

import json
from typing import Any

from keyproof._json import dumps_compact

__all__ = ["decode_fields", "encode_fields"]


def encode_fields(record: Any) -> bytes:
    """A slotted dataclass's fields as compact JSON (tuples become lists)."""
    # Not dataclasses.asdict: it deep-copies every field, three times the cost here.
    fields = {name: getattr(record, name) for name in record.__slots__}
    return dumps_compact(fields).encode()


def decode_fields(data: bytes) -> dict[str, Any]:
    """What :func:`encode_fields` wrote, its lists read back as tuples."""
    fields: dict[str, Any] = json.loads(data)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
