"""Reading LF-separated sign-in texts one line at a time (SIWE, SIWS, the did:key format).

The envelope rule every keyproof text format shares: ASCII only, LF line breaks only,
no trailing line break, at most :data:`~keyproof.messages._fields.MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

from keyproof.messages import _fields as f

__all__ = ["Lines", "check_envelope", "read_resources", "resource_lines", "strip_header"]


def check_envelope(text: object) -> str:
    """Return ``text`` if it is an ASCII, LF-only text without a trailing line break."""
    if not isinstance(text, str):
        raise f.malformed("message", "must be text")
    f.check_message_size(text)
    if not text.isascii():
        raise f.malformed("message", "only ASCII is allowed")
    if "\r" in text:
        raise f.malformed("message", "lines must end with LF only")
    if text.endswith("\n"):
        raise f.malformed("message", "must not end with a line break")
    return text


def strip_header(header: str, suffix: str) -> str:
    """The origin in front of ``suffix`` on a header line."""
    if not header.endswith(suffix):
        raise f.malformed("header", f"must end with {suffix.strip()!r}")
    return header.removesuffix(suffix)


class Lines:
    """A cursor over the lines of a message."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._at = 0

    def done(self) -> bool:
        return self._at >= len(self._lines)

    def peek(self) -> str | None:
        return None if self.done() else self._lines[self._at]

    def next(self, what: str) -> str:
        if self.done():
            raise f.malformed(what, "missing")
        line = self._lines[self._at]
        self._at += 1
        return line

    def blank(self, what: str) -> None:
        if self.next(what) != "":
            raise f.malformed(what, "expected an empty line")

    def field(self, label: str, what: str | None = None) -> str:
        what = what or label.removesuffix(": ").lower()
        line = self.next(what)
        if not line.startswith(label):
            raise f.malformed(what, f"expected a line starting with {label!r}")
        return line[len(label) :]

    def optional(self, label: str) -> str | None:
        line = self.peek()
        if line is None or not line.startswith(label):
            return None
        return self.field(label)

    def finish(self) -> None:
        if not self.done():
            raise f.malformed("message", "unexpected line after the last field")


def read_resources(lines: Lines) -> tuple[str, ...]:
    """``[ "Resources:" 1*( LF "- " URI ) ]``; an empty list is refused."""
    if lines.peek() != "Resources:":
        return ()
    lines.next("resources")
    found: list[str] = []
    while not lines.done():
        if len(found) == f.MAX_RESOURCES:
            raise f.malformed("resources", f"more than {f.MAX_RESOURCES} entries")
        found.append(lines.field("- ", f"resources[{len(found)}]"))
    if not found:
        raise f.malformed("resources", "a Resources: line needs at least one resource")
    return tuple(found)


def resource_lines(resources: tuple[str, ...]) -> list[str]:
    """The lines :func:`read_resources` reads back."""
    if not resources:
        return []
    return ["Resources:", *(f"- {resource}" for resource in resources)]
