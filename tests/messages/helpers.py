"""Strategies, spec examples and robustness checks the sign-in format tests share."""

from __future__ import annotations

import contextlib
import re
import string
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from keyproof.accounts import Account, ChallengeText
from keyproof.errors import KeyproofError

FAST = settings(max_examples=200, deadline=None)

ALNUM = string.ascii_letters + string.digits
UNRESERVED = ALNUM + "-._~"
SUB_DELIMS = "!$&'()*+,;="
PCHAR = UNRESERVED + SUB_DELIMS + ":@"
STATEMENT_ALPHABET = UNRESERVED + ":/?#[]@" + SUB_DELIMS + " "

labels = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12)

# Plain values for the SIWS and did:key tests; the SIWE tests draw from a wider grammar.
authorities = st.builds(
    lambda host, port: host + ("" if port is None else f":{port}"),
    st.lists(labels, min_size=1, max_size=3).map(".".join) | st.ip_addresses(v=4).map(str),
    st.none() | st.integers(1, 65535),
)
segments = st.text(alphabet=PCHAR, max_size=10)
uris = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["https", "http", "ipfs"]),
    authorities,
    segments,
)
times = st.builds(
    lambda moment, fraction: moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z",
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 12, 31)),
    st.sampled_from(["", ".1", ".123", ".123456789"]),
)
nonces = st.text(alphabet=ALNUM, min_size=8, max_size=64)
statements = st.text(alphabet=STATEMENT_ALPHABET, min_size=1, max_size=80)


def parse_or_keyproof_error(text: str, *parsers: Callable[[str], object]) -> None:
    """Run each parser on ``text``; anything but a ``KeyproofError`` escapes."""
    for parse in parsers:
        with contextlib.suppress(KeyproofError):
            parse(text)


def with_value(text: str, line: str, value: str) -> str:
    """``text`` with ``line`` holding ``value`` after its label (the whole line if none)."""
    label = line.split(": ", 1)[0] + ": " if ": " in line else ""
    return text.replace(line, label + value, 1)


def assert_round_trips(message: Any, parse: Callable[[str], Any]) -> None:
    """``message`` renders to a text that parses back to it and renders the same."""
    text = message.to_text()
    parsed = parse(text)
    assert parsed == message
    assert parsed.to_text() == text


@st.composite
def mutated(draw: st.DrawFn, texts: Sequence[str], kinds: Sequence[str]) -> str:
    """One of ``texts`` with one line damaged in one of the ``kinds`` of ways."""
    lines = draw(st.sampled_from(texts)).split("\n")
    index = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(kinds))
    if kind == "delete":
        del lines[index]
    elif kind == "duplicate":
        lines.insert(index, lines[index])
    elif kind == "swap":
        other = draw(st.integers(0, len(lines) - 1))
        lines[index], lines[other] = lines[other], lines[index]
    elif kind == "blank":
        lines.insert(index, "")
    elif kind == "crlf":
        lines[index] += "\r"
    elif kind == "trailing":
        lines.append("")
    elif kind == "insert":
        at = draw(st.integers(0, len(lines[index])))
        lines[index] = lines[index][:at] + draw(st.characters()) + lines[index][at:]
    else:
        joined = "\n".join(lines)
        return joined[: draw(st.integers(0, len(joined)))]
    return "\n".join(lines)


# --- the worked examples in specs/protocol.md ------------------------------------------

SPEC = Path(__file__).resolve().parents[2] / "specs" / "protocol.md"


def spec_example(heading: str) -> dict[str, str]:
    """The seed or key, account, message and signature of one worked example."""
    section = SPEC.read_text(encoding="utf-8").split(f"### {heading}\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    message = re.search(r"```text\n(.*?)\n```", section, re.DOTALL)
    secret = re.search(r"(?:seed|private key): `([0-9a-f]{64})`", section)
    account = re.search(r"- account: `([^`]+)`", section)
    signature = re.search(r"signature[^`]*`([^`]+)`", section.split("```")[-1])
    assert message and secret and account and signature, f"incomplete example {heading!r}"
    return {
        "secret": secret.group(1),
        "account": account.group(1),
        "message": message.group(1),
        "signature": signature.group(1),
    }


def example_challenge(account: Account) -> ChallengeText:
    return ChallengeText(
        account=account,
        domain="example.com",
        uri="https://example.com/login",
        statement="Sign in with your key.",
        nonce="Ab12Cd34Ef56Gh78",
        issued_at="2027-01-15T08:00:00Z",
        expiration_time="2027-01-15T08:05:00Z",
        resources=(),
    )
