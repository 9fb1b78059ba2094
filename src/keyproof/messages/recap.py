"""ReCaps (EIP-5573): the capabilities a sign-in message delegates, in words and in data.

A ReCap is the last resource of a sign-in message: ``urn:recap:`` followed by the
unpadded base64url (RFC 4648 §5) of a JSON "ReCap Details Object"::

    {"att":{"https://api.example.com":{"escrow/read":[{}],"escrow/release":[{}]}},"prf":[]}

and the statement ends with its translation (EIP-5573 "ReCap Translation Algorithm")::

    I further authorize the stated URI to perform the following actions on my behalf:
    (1) 'escrow': 'read', 'release' for 'https://api.example.com'.

(one line in a message). keyproof writes one resource, the audience URI, with one
ability ``namespace/name`` per scope ``namespace:name`` and the unrestricted nota bene
``[{}]``; the JSON is compact, keys in JavaScript ``Array.sort()`` order (UTF-16 code
units), as in the EIP's examples, with ``"prf":[]`` as in its first example.

Decisions:

- A scope is ``namespace:name``, each part ``[a-z0-9][a-z0-9_.-]{0,63}``, the same
  grammar as :mod:`keyproof.server.policy`.
- Ability strings follow the EIP's regex with its ``A-z`` typo read as ``A-Z``:
  ``[a-zA-Z0-9.*_+-]+/[a-zA-Z0-9.*_+-]+``.
- :func:`scopes_of` yields an ability only when it is a keyproof scope and one of its
  nota benes is ``{}`` (use without restriction): keyproof cannot enforce restrictions,
  and an empty list means the ability cannot be used at all (EIP-5573). Wildcards and
  other abilities are left out, never widened.
- Decoding is strict: at most 4096 characters, canonical base64url, UTF-8 JSON whose
  objects have unique keys in sorted order, only ``att`` (required, non-empty) and
  ``prf`` at the top, finite numbers, nesting at most 8 deep, ``prf`` entries
  alphanumeric CIDs.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeVar

from keyproof.crypto.encoding import encode_base64url, parse_base64url
from keyproof.errors import MalformedMessage
from keyproof.messages import _fields as f

__all__ = [
    "PREAMBLE",
    "RECAP_PREFIX",
    "Capability",
    "decode_recap",
    "encode_capability",
    "encode_recap",
    "recap_sentence",
    "scopes_of",
    "signed_capability",
    "statement_with_recap",
]

RECAP_PREFIX: Final = "urn:recap:"
PREAMBLE: Final = (
    "I further authorize the stated URI to perform the following actions on my behalf:"
)
MAX_DEPTH: Final = 8
MAX_SCOPES: Final = 64
MAX_ENTRIES: Final = 64
_ABILITY_RE: Final = re.compile(r"[a-zA-Z0-9.*_+-]+/[a-zA-Z0-9.*_+-]+", re.ASCII)
_SCOPE_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}:[a-z0-9][a-z0-9_.-]{0,63}", re.ASCII)
_PROOF_RE: Final = re.compile(r"[A-Za-z0-9]{1,256}", re.ASCII)

_V = TypeVar("_V")
NotaBene = Mapping[str, object]
"""A qualification of one ability (a JSON object); ``{}`` means no restriction."""


def _malformed(problem: str) -> MalformedMessage:
    return f.malformed("recap", problem)


@dataclass(frozen=True, slots=True)
class Capability:
    """A ReCap Details Object; constructing one validates it and freezes a sorted copy.

    ``attenuations`` is ``att``: resource URI -> ability ``namespace/name`` -> nota
    benes. ``proofs`` is ``prf``: CIDs of parent capabilities.
    """

    attenuations: Mapping[str, Mapping[str, tuple[NotaBene, ...]]]
    proofs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "attenuations", _frozen_attenuations(self.attenuations))
        if not isinstance(self.proofs, tuple):
            raise _malformed("prf must be a list")
        for proof in self.proofs:
            if not isinstance(proof, str) or _PROOF_RE.fullmatch(proof) is None:
                raise _malformed("prf entries must be alphanumeric CIDs")


def _js_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _sorted_mapping(items: Iterable[tuple[str, _V]]) -> Mapping[str, _V]:
    return MappingProxyType(dict(sorted(items, key=lambda item: _js_order(item[0]))))


def _frozen_attenuations(
    att: object,
) -> Mapping[str, Mapping[str, tuple[NotaBene, ...]]]:
    if not isinstance(att, Mapping) or not 0 < len(att) <= MAX_ENTRIES:
        raise _malformed(f"att must be an object with 1 to {MAX_ENTRIES} resources")
    frozen = {}
    for resource, abilities in att.items():
        if not isinstance(resource, str):
            raise _malformed("att keys must be URIs")
        f.check_uri(resource, "recap resource")
        frozen[resource] = _frozen_abilities(abilities)
    return _sorted_mapping(frozen.items())


def _frozen_abilities(abilities: object) -> Mapping[str, tuple[NotaBene, ...]]:
    if not isinstance(abilities, Mapping) or not 0 < len(abilities) <= MAX_ENTRIES:
        raise _malformed(f"each resource needs 1 to {MAX_ENTRIES} abilities")
    frozen = {}
    for ability, notes in abilities.items():
        if not isinstance(ability, str) or _ABILITY_RE.fullmatch(ability) is None:
            raise _malformed("ability must be namespace/name")
        if not isinstance(notes, Sequence) or isinstance(notes, str):
            raise _malformed("an ability maps to a list of objects")
        frozen[ability] = tuple(_frozen_note(note) for note in notes)
    return _sorted_mapping(frozen.items())


def _frozen_note(note: object) -> NotaBene:
    frozen = _frozen_json(note, 4)
    if not isinstance(frozen, Mapping):
        raise _malformed("an ability maps to a list of objects")
    return frozen


def _frozen_json(value: object, depth: int) -> object:
    """A read-only copy of a JSON value: objects as sorted mappings, arrays as tuples."""
    if depth > MAX_DEPTH:
        raise _malformed(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) and _encodable(key) for key in value):
            raise _malformed("object keys must be text")
        return _sorted_mapping((k, _frozen_json(v, depth + 1)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen_json(item, depth + 1) for item in value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _malformed("numbers must be finite")
    if isinstance(value, str) and not _encodable(value):
        raise _malformed("text must be valid Unicode")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise _malformed("not a JSON value")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _thawed(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thawed(item) for item in value]
    return value


def encode_capability(capability: Capability) -> str:
    """The ``urn:recap:`` resource for ``capability`` (canonical compact JSON)."""
    document = {"att": _thawed(capability.attenuations), "prf": list(capability.proofs)}
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = encode_base64url(text.encode("utf-8"))
    resource = RECAP_PREFIX + payload
    if len(resource) > f.MAX_RESOURCE:
        raise _malformed(f"longer than {f.MAX_RESOURCE} characters")
    return resource


def _abilities_for(scopes: Iterable[str]) -> dict[str, tuple[NotaBene, ...]]:
    abilities: dict[str, tuple[NotaBene, ...]] = {}
    for scope in scopes:
        if not isinstance(scope, str) or _SCOPE_RE.fullmatch(scope) is None:
            raise f.malformed("scope", "must be namespace:name")
        abilities[scope.replace(":", "/", 1)] = ({},)
        if len(abilities) > MAX_SCOPES:
            raise f.malformed("scope", f"more than {MAX_SCOPES} scopes")
    return abilities


def encode_recap(audience_uri: str, scopes: Iterable[str]) -> str:
    """The ReCap granting each scope ``ns:name`` as ability ``ns/name`` on ``audience_uri``."""
    f.check_uri(audience_uri, "audience")
    return encode_capability(Capability({audience_uri: _abilities_for(scopes)}))


def _unpadded_base64url(payload: str) -> bytes:
    data = parse_base64url(payload, max_length=f.MAX_RESOURCE) if payload else None
    if data is None:
        raise _malformed("payload is not canonical unpadded base64url")
    return data


def _ordered_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [_js_order(key) for key, _ in pairs]
    if any(earlier >= later for earlier, later in itertools.pairwise(keys)):
        raise _malformed("object keys must be unique and sorted")
    return dict(pairs)


def _reject_constant(name: str) -> object:
    raise _malformed(f"{name} is not JSON")


def _document(data: bytes) -> dict[str, object]:
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_ordered_object,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError):
        raise _malformed("payload is not UTF-8 JSON") from None
    if not isinstance(document, dict) or not set(document) <= {"att", "prf"}:
        raise _malformed("must be an object with att and optional prf")
    if "att" not in document:
        raise _malformed("att is required")
    return document


def decode_recap(resource: str) -> Capability:
    """Strictly decode a ``urn:recap:`` resource."""
    if not isinstance(resource, str) or len(resource) > f.MAX_RESOURCE:
        raise _malformed(f"must be text of at most {f.MAX_RESOURCE} characters")
    if not resource.startswith(RECAP_PREFIX):
        raise _malformed(f"must start with {RECAP_PREFIX}")
    document = _document(_unpadded_base64url(resource.removeprefix(RECAP_PREFIX)))
    proofs = document.get("prf", [])
    if not isinstance(proofs, list):
        raise _malformed("prf must be a list")
    return Capability(document["att"], tuple(proofs))  # type: ignore[arg-type]


def recap_sentence(capability: Capability) -> str:
    """The EIP-5573 ReCap Translation Algorithm's sentence for ``capability``."""
    entries = [PREAMBLE]
    for resource, abilities in capability.attenuations.items():
        groups: dict[str, list[str]] = {}
        for ability in abilities:
            namespace, _, name = ability.partition("/")
            groups.setdefault(namespace, []).append(f"'{name}'")
        for namespace, names in groups.items():
            number = len(entries)
            entries.append(f" ({number}) '{namespace}': {', '.join(names)} for '{resource}'.")
    return "".join(entries)


def statement_with_recap(statement: str | None, capability: Capability) -> str:
    """``statement`` followed by a space and the ReCap sentence (just the sentence if empty)."""
    sentence = recap_sentence(capability)
    text = f"{statement} {sentence}" if statement else sentence
    f.check_statement(text)
    return text


def scopes_of(capability: Capability, audience_uri: str) -> frozenset[str]:
    """The scopes granted without restriction on ``audience_uri``."""
    abilities = capability.attenuations.get(audience_uri, {})
    return frozenset(
        ability.replace("/", ":", 1)
        for ability, notes in abilities.items()
        if any(len(note) == 0 for note in notes)
        and _SCOPE_RE.fullmatch(ability.replace("/", ":", 1)) is not None
    )


def signed_capability(statement: str | None, resources: Sequence[str]) -> Capability | None:
    """The ReCap a message carries, checked as EIP-5573 "ReCap Verification" requires.

    ``None`` when no resource is a ReCap. Otherwise the ReCap must be the only one and
    the last resource, and the statement must end with its sentence (after a space, or
    be exactly the sentence).
    """
    marked = [i for i, r in enumerate(resources) if r[: len(RECAP_PREFIX)].lower() == RECAP_PREFIX]
    if not marked:
        return None
    if marked != [len(resources) - 1]:
        raise f.malformed("resources", "a ReCap must be the only one and the last resource")
    capability = decode_recap(resources[-1])
    sentence = recap_sentence(capability)
    if statement != sentence and not (statement or "").endswith(" " + sentence):
        raise f.malformed("statement", "does not end with the ReCap sentence")
    return capability
