"""The error-code table in specs/protocol.md and keyproof.errors stay in step."""

from __future__ import annotations

import re
from pathlib import Path

from keyproof import errors

SPEC = Path(__file__).resolve().parents[1] / "specs" / "protocol.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \| `([a-z_]+)` \| `([A-Za-z]+)` \|$")


def spec_rows() -> dict[str, tuple[int, str, str]]:
    rows = {}
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            code, status, oauth, cls = match.groups()
            assert code not in rows, f"{code} listed twice"
            rows[code] = (int(status), oauth, cls)
    return rows


def test_every_code_is_documented_with_its_status_and_class():
    in_code = {
        code: (cls.status, cls.oauth_error, cls.__name__)
        for code, cls in errors.all_codes().items()
    }
    assert spec_rows() == in_code


def test_codes_belong_to_exactly_one_class():
    seen: dict[str, str] = {}
    pending = [errors.KeyproofError]
    while pending:
        cls = pending.pop()
        for code in cls.codes:
            assert code not in seen, f"{code} in {seen.get(code)} and {cls.__name__}"
            seen[code] = cls.__name__
        pending.extend(cls.__subclasses__())
    assert seen


def test_unknown_code_cannot_be_raised():
    try:
        errors.SignatureInvalid("nonce_used", "x")
    except ValueError as refused:
        assert "nonce_used" in str(refused)
    else:
        raise AssertionError("a code of another class was accepted")


def test_every_code_is_raised_somewhere():
    """No exported error code is dead: each appears in a module other than errors.py."""
    source = Path(errors.__file__).parent
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in source.rglob("*.py") if p.name != "errors.py"
    )
    unused = sorted(code for code in errors.all_codes() if f'"{code}"' not in text)
    assert unused == []
