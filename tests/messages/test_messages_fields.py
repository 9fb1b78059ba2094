"""The field grammar shared by every sign-in format (keyproof.messages._fields)."""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproof._time import check_window
from keyproof.errors import KeyproofError, MalformedMessage, OutsideValidity
from keyproof.messages import _fields as f

FAST = settings(max_examples=200, deadline=None)


def _rejects(check: object, value: object, *args: object) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as caught:
        check(value, *args)  # type: ignore[operator]
    assert caught.value.code == "malformed_message"
    return caught.value


# --- nonce -----------------------------------------------------------------------------


@pytest.mark.parametrize("nonce", ["32891756", "abcdEFGH", "a" * 128, "0" * 8])
def test_nonce_accepts_8_to_128_alphanumerics(nonce: str) -> None:
    f.check_nonce(nonce)


@pytest.mark.parametrize(
    "nonce",
    [
        pytest.param("1234567", id="seven-characters"),
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="over-128"),
        pytest.param("abcd-efgh", id="hyphen"),
        pytest.param("abcd efgh", id="space"),
        pytest.param("abcdefgh\n", id="trailing-lf"),
        pytest.param("abcdéfgh", id="non-ascii-letter"),
        pytest.param("\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", id="fullwidth-digits"),
    ],
)
def test_nonce_rejects(nonce: str) -> None:
    assert "nonce" in str(_rejects(f.check_nonce, nonce))


# --- RFC 3339 date-time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-09-30T16:25:24Z", datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)),
        ("2021-09-30T16:25:24.000Z", datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)),
        ("2021-09-30T16:25:24.5Z", datetime(2021, 9, 30, 16, 25, 24, 500000, tzinfo=UTC)),
        ("2021-09-30T16:25:24.123456789Z", datetime(2021, 9, 30, 16, 25, 24, 123456, tzinfo=UTC)),
        (
            "2021-09-30T16:25:24+05:30",
            datetime(2021, 9, 30, 16, 25, 24, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            "2021-09-30T16:25:24-08:00",
            datetime(2021, 9, 30, 16, 25, 24, tzinfo=timezone(timedelta(hours=-8))),
        ),
        ("2021-09-30T16:25:24-00:00", datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2000-02-29T23:59:59Z", datetime(2000, 2, 29, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_datetime_parses_to_aware_value(text: str, expected: datetime) -> None:
    parsed = f.parse_datetime(text, "issued at")
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2023-02-29T00:00:00Z", id="feb-29-common-year"),
        pytest.param("1900-02-29T00:00:00Z", id="feb-29-century-not-leap"),
        pytest.param("2024-02-30T00:00:00Z", id="feb-30"),
        pytest.param("2021-04-31T00:00:00Z", id="april-31"),
        pytest.param("2021-13-01T00:00:00Z", id="month-13"),
        pytest.param("2021-00-01T00:00:00Z", id="month-00"),
        pytest.param("2021-01-00T00:00:00Z", id="day-00"),
        pytest.param("0000-01-01T00:00:00Z", id="year-0000"),
        pytest.param("2021-09-30T24:00:00Z", id="hour-24"),
        pytest.param("2021-09-30T16:60:00Z", id="minute-60"),
        pytest.param("2016-12-31T23:59:60Z", id="leap-second"),
        pytest.param("2021-09-30t16:25:24Z", id="lowercase-t"),
        pytest.param("2021-09-30T16:25:24z", id="lowercase-z"),
        pytest.param("2021-09-30 16:25:24Z", id="space-separator"),
        pytest.param("2021-09-30T16:25:24", id="no-offset"),
        pytest.param("2021-09-30T16:25Z", id="no-seconds"),
        pytest.param("2021-09-30T16:25:24.Z", id="empty-fraction"),
        pytest.param("2021-09-30T16:25:24.1234567890Z", id="ten-fraction-digits"),
        pytest.param("2021-09-30T16:25:24+0530", id="offset-without-colon"),
        pytest.param("2021-09-30T16:25:24+05", id="offset-hours-only"),
        pytest.param("2021-09-30T16:25:24+24:00", id="offset-hour-24"),
        pytest.param("2021-09-30T16:25:24+05:60", id="offset-minute-60"),
        pytest.param("2021-9-30T16:25:24Z", id="one-digit-month"),
        pytest.param("21-09-30T16:25:24Z", id="two-digit-year"),
        pytest.param("+2021-09-30T16:25:24Z", id="signed-year"),
        pytest.param("2021-09-30T16:25:24Z ", id="trailing-space"),
        pytest.param("2021-09-30", id="date-only"),
        pytest.param("1632932724", id="unix-seconds"),
        pytest.param("Wed Oct 05 2011 16:48:00 GMT+0200", id="javascript-date-string"),
        pytest.param("\uff12\uff10\uff12\uff11-09-30T16:25:24Z", id="fullwidth-digits"),
        pytest.param("9999-12-31T23:59:59-01:00", id="overflows-after-utc"),
        pytest.param("0001-01-01T00:00:00+01:00", id="underflows-before-utc"),
        pytest.param("", id="empty"),
    ],
)
def test_datetime_rejects(text: str) -> None:
    assert "issued at" in str(_rejects(f.parse_datetime, text, "issued at"))


@FAST
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_datetime_round_trips_any_moment(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond:06d}{sign}{hours:02d}:{minutes:02d}"
    )
    assert f.parse_datetime(text, "t") == moment.replace(tzinfo=zone)


@FAST
@given(st.text(max_size=40))
def test_datetime_raises_only_malformed_message(text: str) -> None:
    with contextlib.suppress(MalformedMessage):
        f.parse_datetime(text, "t")


# --- RFC 3986 URI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com",
        "https://example.com/",
        "https://example.com/login?next=%2Fhome#top",
        "http://user:pw@127.0.0.1:8080/a/b;c=d",
        "https://[::1]:8443/",
        "https://[2001:db8::7]/x",
        "https://[v7.fe80::a+b]/",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:key:example",
        "urn:recap:eyJhdHQiOnt9fQ",
        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
        "mailto:username@example.com",
        "file:///etc/hosts",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "a:",
        "x+y.z-w:/absolute/path",
        "https://example.com/it's-(fine)*!$&+,;=~",
    ],
)
def test_uri_accepts(uri: str) -> None:
    f.check_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("", id="empty"),
        pytest.param("example.com", id="no-scheme"),
        pytest.param("/relative/path", id="relative-reference"),
        pytest.param("//example.com", id="network-path-reference"),
        pytest.param("1https://example.com", id="scheme-starts-with-digit"),
        pytest.param("ht_tp://example.com", id="underscore-in-scheme"),
        pytest.param("https://exa mple.com", id="space"),
        pytest.param("https://example.com/a b", id="space-in-path"),
        pytest.param("https://example.com/%zz", id="bad-percent-escape"),
        pytest.param("https://example.com/%4", id="short-percent-escape"),
        pytest.param("https://example.com/<script>", id="angle-brackets"),
        pytest.param('https://example.com/"q"', id="double-quote"),
        pytest.param("https://example.com/{x}", id="braces"),
        pytest.param("https://example.com/a|b", id="pipe"),
        pytest.param("https://example.com/a\\b", id="backslash"),
        pytest.param("https://example.com/a^b", id="caret"),
        pytest.param("https://example.com/`", id="backtick"),
        pytest.param("https://example.com/\t", id="tab"),
        pytest.param("https://example.com/\x7f", id="delete-control"),
        pytest.param("https://example.com\n", id="trailing-lf"),
        pytest.param("https://exämple.com", id="non-ascii"),
        pytest.param("https://example.com#a#b", id="two-fragments"),
        pytest.param("https://[::1/", id="unclosed-ip-literal"),
        pytest.param("https://[1.2.3.4]/", id="ipv4-in-brackets"),
        pytest.param("https://[::g]/", id="bad-ipv6"),
        pytest.param("https://a@b@c/", id="two-at-signs"),
        pytest.param("https://example.com:80a/", id="letter-in-port"),
        pytest.param("https://example.com/" + "a" * f.MAX_URI, id="too-long"),
    ],
)
def test_uri_rejects(uri: str) -> None:
    _rejects(f.check_uri, uri)


@FAST
@given(st.text(alphabet=":/@[]%?#abc019.-", max_size=60))
def test_uri_raises_only_malformed_message(text: str) -> None:
    with contextlib.suppress(MalformedMessage):
        f.check_uri(text)


def test_uri_pathological_input_is_fast() -> None:
    # Each of these is refused by the regex; a backtracking blow-up would hang here.
    for text in ("a://" + ":" * 2000 + "@" * 40 + " ", "a://" + "%41" * 680 + "%"):
        _rejects(f.check_uri, text)


# --- authority (the domain) ------------------------------------------------------------


@pytest.mark.parametrize(
    "authority",
    [
        "example.com",
        "localhost",
        "localhost:3000",
        "example.com:3388",
        "127.0.0.1",
        "127.0.0.1:8080",
        "test@127.0.0.1:8080",
        "user:pass@example.com",
        "[::1]",
        "[::1]:8443",
        "[2001:db8:85a3::8a2e:370:7334]:1",
        "[::ffff:192.0.2.1]",
        "[v1.fe]",
        "xn--bcher-kva.example",
        "sub.example.co.uk:65535",
        "ex%41mple.com",
        "999.1.1.1",
    ],
)
def test_authority_accepts(authority: str) -> None:
    f.check_authority(authority)


@pytest.mark.parametrize(
    "authority",
    [
        pytest.param("", id="empty"),
        pytest.param(":80", id="empty-host"),
        pytest.param("user@", id="userinfo-only"),
        pytest.param("example.com:", id="empty-port"),
        pytest.param("example.com:0", id="port-0"),
        pytest.param("example.com:65536", id="port-above-65535"),
        pytest.param("example.com:000443", id="six-digit-port"),
        pytest.param("example.com/login", id="path"),
        pytest.param("https://example.com", id="has-scheme"),
        pytest.param("exa mple.com", id="space"),
        pytest.param("example.com?x", id="query"),
        pytest.param("a@b@c", id="two-at-signs"),
        pytest.param("[::1", id="unclosed-bracket"),
        pytest.param("::1", id="ipv6-without-brackets"),
        pytest.param("[1.2.3.4]", id="ipv4-in-brackets"),
        pytest.param("[::1%25eth0]", id="ipv6-zone-id"),
        pytest.param("[1:2:3:4:5:6:7:8:9]", id="nine-ipv6-groups"),
        pytest.param("[::01.2.3.4]", id="leading-zero-embedded-ipv4"),
        pytest.param("ex%zzample.com", id="bad-percent-escape"),
        pytest.param("例え.jp", id="unicode-host"),
        pytest.param("example.com\n", id="trailing-lf"),
        pytest.param("a" * (f.MAX_AUTHORITY + 1), id="too-long"),
    ],
)
def test_authority_rejects(authority: str) -> None:
    assert "domain" in str(_rejects(f.check_authority, authority))


@FAST
@given(st.ip_addresses(v=6))
def test_authority_accepts_every_ipv6_spelling(address: ipaddress.IPv6Address) -> None:
    f.check_authority(f"[{address.compressed}]:443")
    f.check_authority(f"[{address.exploded}]")


@FAST
@given(st.text(alphabet="0123456789abcdefABCDEF:.", min_size=2, max_size=45))
def test_ip_literal_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        expected_valid = False
    else:
        expected_valid = True
    try:
        f.check_authority(f"[{text}]")
    except MalformedMessage:
        assert not expected_valid
    else:
        assert expected_valid


# --- scheme, statement, request id -----------------------------------------------------


@pytest.mark.parametrize("scheme", ["https", "http", "a", "coap+tcp", "x-y.z", "HTTPS"])
def test_scheme_accepts(scheme: str) -> None:
    f.check_scheme(scheme)


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param("", id="empty"),
        pytest.param("1http", id="leading-digit"),
        pytest.param("ht tp", id="space"),
        pytest.param("http:", id="colon"),
        pytest.param("a" * (f.MAX_SCHEME + 1), id="too-long"),
    ],
)
def test_scheme_rejects(scheme: str) -> None:
    _rejects(f.check_scheme, scheme)


STATEMENT_CHARACTERS = "ABCXYZabcxyz0189-._~:/?#[]@!$&'()*+,;= "  # reserved / unreserved / " "


def test_statement_accepts_its_whole_alphabet() -> None:
    f.check_statement(STATEMENT_CHARACTERS)
    f.check_statement("I accept the ExampleOrg Terms of Service: https://example.com/tos")


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("", id="empty"),
        pytest.param("line\nbreak", id="lf"),
        pytest.param("carriage\rreturn", id="cr"),
        pytest.param("tab\there", id="tab"),
        pytest.param('say "hi"', id="double-quote"),
        pytest.param("100% sure", id="percent"),
        pytest.param("a < b", id="less-than"),
        pytest.param("a > b", id="greater-than"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("a^b", id="caret"),
        pytest.param("`code`", id="backtick"),
        pytest.param("{json}", id="braces"),
        pytest.param("a|b", id="pipe"),
        pytest.param("del\x7f", id="delete-control"),
        pytest.param("nul\x00", id="nul"),
        pytest.param("café", id="non-ascii"),
        pytest.param("smile \U0001f600", id="emoji"),
        pytest.param("a" * (f.MAX_STATEMENT + 1), id="too-long"),
    ],
)
def test_statement_rejects(statement: str) -> None:
    assert "statement" in str(_rejects(f.check_statement, statement))


@pytest.mark.parametrize("request_id", ["", "abc-123", "a:b@c", "%41%42", "!$&'()*+,;=~._"])
def test_request_id_accepts_pchars(request_id: str) -> None:
    f.check_request_id(request_id)


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("a b", id="space"),
        pytest.param("a/b", id="slash"),
        pytest.param("a?b", id="question-mark"),
        pytest.param("a#b", id="hash"),
        pytest.param("%4", id="short-percent-escape"),
        pytest.param("é", id="non-ascii"),
        pytest.param("a" * (f.MAX_REQUEST_ID + 1), id="too-long"),
    ],
)
def test_request_id_rejects(request_id: str) -> None:
    _rejects(f.check_request_id, request_id)


# --- chain id --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("137", 137), (str(f.MAX_CHAIN_ID), f.MAX_CHAIN_ID)]
)
def test_chain_id_parses(text: str, value: int) -> None:
    assert f.parse_chain_id(text) == value


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("0", id="zero"),
        pytest.param("01", id="leading-zero"),
        pytest.param("-1", id="negative"),
        pytest.param("+1", id="plus-sign"),
        pytest.param("1.0", id="decimal-point"),
        pytest.param(" 1", id="leading-space"),
        pytest.param("1_000", id="underscore"),
        pytest.param("0x1", id="hex"),
        pytest.param("\u0661", id="arabic-indic-digit"),
        pytest.param(str(f.MAX_CHAIN_ID + 1), id="above-eip-2294"),
        pytest.param("9" * 40, id="forty-digits"),
    ],
)
def test_chain_id_rejects(text: str) -> None:
    _rejects(f.parse_chain_id, text)


# --- resources and sizes ---------------------------------------------------------------


def test_resources_bounded_in_count() -> None:
    f.check_resources(("https://example.com",) * f.MAX_RESOURCES)
    _rejects(f.check_resources, ("https://example.com",) * (f.MAX_RESOURCES + 1))


def test_resources_error_names_the_bad_entry() -> None:
    error = _rejects(f.check_resources, ("https://ok.example", "not a uri"))
    assert "resources[1]" in str(error)


def test_message_size_counts_utf8_bytes() -> None:
    f.check_message_size("a" * f.MAX_MESSAGE_BYTES)
    for text in ("a" * (f.MAX_MESSAGE_BYTES + 1), "é" * (f.MAX_MESSAGE_BYTES // 2 + 1)):
        with pytest.raises(MalformedMessage) as caught:
            f.check_message_size(text)
        assert caught.value.code == "message_too_long"


def test_message_size_survives_lone_surrogates() -> None:
    f.check_message_size("\ud800" * 10)


# --- validity window -------------------------------------------------------------------

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
T5 = T0 + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("now", "code"),
    [
        pytest.param(T0 - timedelta(microseconds=1), "message_not_yet_valid", id="before-nbf"),
        pytest.param(T0, None, id="at-nbf"),
        pytest.param(T0 + timedelta(minutes=5) - timedelta(microseconds=1), None, id="last-us"),
        pytest.param(T0 + timedelta(minutes=5), "message_expired", id="at-expiration"),
        pytest.param(T0 + timedelta(days=1), "message_expired", id="long-after"),
    ],
)
def test_window_is_half_open(now: datetime, code: str | None) -> None:
    def check() -> None:
        check_window(now.timestamp(), expires_at=T5.timestamp(), not_before=T0.timestamp())

    if code is None:
        check()
        return
    with pytest.raises(OutsideValidity) as caught:
        check()
    assert caught.value.code == code


def test_window_without_bounds_is_always_open() -> None:
    check_window(T0.timestamp(), expires_at=None, not_before=None)


def test_errors_are_keyproof_errors() -> None:
    assert issubclass(MalformedMessage, KeyproofError)
