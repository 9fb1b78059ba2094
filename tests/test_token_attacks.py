"""One regression test per known JWT attack class, through both verification paths.

Every forged token is refused by ``verify_access_token`` (``TokenInvalid``) and by a
running guard (401 ``invalid_token``); the control token built the same way but
honestly is accepted, so each test can fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyproof.errors import TokenInvalid
from keyproof.server.keys import KeySet, SigningKey
from keyproof.stores.base import Kind
from keyproof.tokens import MAX_TOKEN_LIFETIME, verify_access_token

from conftest import FrozenClock
from test_guard import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    OTHER_AUDIENCE,
    SUBJECT,
    GuardEnv,
    bearer,
    guard_env,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


class Attack:
    """Builds tokens around the running issuer's real key and claims."""

    def __init__(self, env: GuardEnv, rs: httpx.AsyncClient) -> None:
        self.env = env
        self.rs = rs
        self.signing = env.keys().signing_key()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.env.clock())
        claims = {
            "iss": ISSUER,
            "sub": SUBJECT,
            "aud": AUDIENCE,
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "jti": "attack-jti",
            "scope": "escrow:release",
            "client_id": SUBJECT,
        }
        claims.update(overrides)
        return claims

    def header(self, **overrides: Any) -> dict[str, Any]:
        header = {"alg": "EdDSA", "typ": "at+jwt", "kid": self.signing.kid}
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not None}

    def signed(
        self,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        signing_input = f"{segment(header or self.header())}.{segment(claims or self.claims())}"
        signature = (key or self.signing.private).sign(signing_input.encode())
        return f"{signing_input}.{b64(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        return verify_access_token(
            token,
            keys=self.env.keys().public_keys(),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=int(self.env.clock()),
        )

    async def guard_status(self, token: str) -> tuple[int, str]:
        response = await self.rs.get("/whoami", headers=bearer(token))
        return response.status_code, response.headers.get("www-authenticate", "")

    async def refused(self, token: str, public: str = "invalid token") -> None:
        with pytest.raises(TokenInvalid):
            self.verify(token)
        status, challenge = await self.guard_status(token)
        assert status == 401, token
        # The reply names no attack: one fixed text for every forged token.
        assert challenge == f'Bearer error="invalid_token", error_description="{public}"'

    async def accepted(self, token: str) -> None:
        assert self.verify(token)["sub"] == SUBJECT
        assert (await self.guard_status(token))[0] == 200


@pytest.fixture
async def attack(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Attack]:
    async with guard_env(tmp_path, clock) as env:
        rs = await env.guarded()
        yield Attack(env, rs)


async def test_control_honest_token_is_accepted(attack: Attack):
    await attack.accepted(attack.signed())


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_in_any_case(attack: Attack, alg: str):
    unsigned = f"{segment(attack.header(alg=alg))}.{segment(attack.claims())}"
    honest_signature = attack.signed().rsplit(".", 1)[1]
    await attack.refused(unsigned + ".")
    await attack.refused(f"{unsigned}.{honest_signature}")


async def test_hs256_with_the_public_key_as_secret(attack: Attack):
    public = attack.signing.public
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    jwk = json.dumps(attack.signing.public_jwk()).encode()
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384)):
        for secret in (raw, b64(raw).encode(), pem, jwk):
            signing_input = f"{segment(attack.header(alg=alg))}.{segment(attack.claims())}"
            mac = hmac.new(secret, signing_input.encode(), digest).digest()
            await attack.refused(f"{signing_input}.{b64(mac)}")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "eddsa", "ed25519", "Ed448"])
async def test_other_algorithms_with_a_real_eddsa_signature(attack: Attack, alg: str):
    await attack.refused(attack.signed(attack.header(alg=alg)))


@pytest.mark.parametrize(
    "alg", [{}, ["Ed25519"], 1, None], ids=["object", "array", "number", "null"]
)
async def test_alg_that_is_not_a_string_is_refused_not_a_crash(attack: Attack, alg: Any):
    await attack.refused(attack.signed(attack.header(alg=alg) | {"alg": alg}))


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
async def test_rfc_9864_name_and_its_deprecated_name_are_both_accepted(attack: Attack, alg: str):
    await attack.accepted(attack.signed(attack.header(alg=alg)))


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id+jwt", "at+jwt "])
async def test_wrong_typ(attack: Attack, typ: str | None):
    await attack.refused(attack.signed(attack.header(typ=typ)))


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp"])
async def test_crit_header(attack: Attack, crit: Any):
    await attack.refused(attack.signed(attack.header(crit=crit, b64=True)))


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/etc/passwd", "' OR '1'='1", "x' UNION SELECT 'k", "unknown", 7],
    ids=["traversal", "absolute_path", "sql_or", "sql_union", "unknown", "not_a_string"],
)
async def test_kid_injection(attack: Attack, kid: Any):
    stranger = Ed25519PrivateKey.generate()
    await attack.refused(attack.signed(attack.header(kid=kid), key=stranger))
    await attack.refused(attack.signed(attack.header(kid=kid)))
    # Only well-formed key ids may trigger a JWKS refresh, and only from the one URL.
    assert set(attack.env.transport.paths) <= {"/.well-known/jwks.json"}


async def test_missing_kid(attack: Attack):
    await attack.refused(attack.signed(attack.header(kid=None)))


async def test_jku_x5u_and_embedded_jwk_are_ignored(attack: Attack):
    stranger = SigningKey.generate(int(attack.env.clock()))
    jwk = stranger.public_jwk()
    for extra in (
        {"jwk": jwk, "kid": stranger.kid},
        {"jwk": jwk, "kid": attack.signing.kid},
        {"jku": "http://127.0.0.1:9/jwks.json", "kid": stranger.kid},
        {"x5u": "http://127.0.0.1:9/cert.pem", "kid": stranger.kid},
        {"x5c": ["MIIB"], "kid": stranger.kid},
    ):
        await attack.refused(attack.signed(attack.header(**extra), key=stranger.private))
    assert set(attack.env.transport.paths) <= {"/.well-known/jwks.json"}


async def test_embedded_jwk_does_not_break_an_honest_token(attack: Attack):
    # The header's key material is ignored in both directions: an honest signature
    # still verifies against the published key.
    stranger = SigningKey.generate(0).public_jwk()
    await attack.accepted(attack.signed(attack.header(jwk=stranger, jku="http://127.0.0.1:9")))


async def test_padded_or_non_base64url_segments(attack: Attack):
    honest = attack.signed()
    while "-" not in honest and "_" not in honest:
        attack.env.clock.advance(1)
        honest = attack.signed(claims=attack.claims(jti=f"j{attack.env.clock()}"))
    header, payload, signature = honest.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forgeries = [
        f"{header}.{payload}.{signature}==",
        f"{header}=.{payload}.{signature}",
        f"{header}.{payload}==.{signature}",
        honest.replace("-", "+").replace("_", "/"),
        f"{header}.{payload}. {signature}",
        f"{header}.{payload}.{signature}.",
        f"{header}.{payload}",
        f"{header}..{payload}.{signature}",
        f"{header}.{payload}.{signature[:-1]}*",
        f"{header}.{payload}.{flipped}",
    ]
    # Same signature bytes, non-canonical last character (unused low bits set).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    forgeries.append(f"{header}.{payload}.{signature[:-1]}{alphabet[last | 1]}")
    await attack.accepted(honest)
    with pytest.raises(TokenInvalid):
        # Over HTTP, surrounding whitespace is not part of a header value (RFC 9110 §5.5).
        attack.verify(honest + "\n")
    for forged in forgeries:
        if forged != honest:
            await attack.refused(forged)


async def test_tampered_claims(attack: Attack):
    header, _, signature = attack.signed().split(".")
    escalated = segment(attack.claims(scope="escrow:release admin:all"))
    await attack.refused(f"{header}.{escalated}.{signature}")


async def test_signed_by_another_key_under_the_real_kid(attack: Attack):
    await attack.refused(attack.signed(key=Ed25519PrivateKey.generate()))


@pytest.mark.parametrize(
    ("claim", "offset", "valid"),
    [
        ("exp", -29, True),
        ("exp", -31, False),
        ("exp", -3600, False),
        ("nbf", 29, True),
        ("nbf", 31, False),
        ("iat", 31, False),
    ],
    ids=["exp_within_leeway", "expired", "long_expired", "nbf_within", "immature", "iat_future"],
)
async def test_expired_or_immature_beyond_leeway(
    attack: Attack, claim: str, offset: int, valid: bool
):
    now = int(attack.env.clock())
    token = attack.signed(claims=attack.claims(**{claim: now + offset}))
    if valid:
        await attack.accepted(token)
    else:
        await attack.refused(token, "token expired" if claim == "exp" else "invalid token")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "jti", "sub", "scope", "aud", "iss"])
async def test_missing_or_mistyped_claims(attack: Attack, claim: str):
    claims = attack.claims()
    del claims[claim]
    await attack.refused(attack.signed(claims=claims))
    await attack.refused(attack.signed(claims={**attack.claims(), claim: 1.5}))


async def test_wrong_audience_token_for_service_a_at_service_b(attack: Attack):
    for_a = attack.env.mint(audience=OTHER_AUDIENCE)
    assert jwt.decode(for_a, options={"verify_signature": False})["aud"] == OTHER_AUDIENCE
    await attack.refused(for_a)
    await attack.refused(attack.signed(claims=attack.claims(aud=[OTHER_AUDIENCE])))
    await attack.accepted(attack.env.mint(audience=AUDIENCE))


async def test_wrong_issuer_with_the_real_key(attack: Attack):
    await attack.refused(attack.signed(claims=attack.claims(iss="http://127.0.0.1:8001")))


async def test_oversized_token(attack: Attack):
    claims = attack.claims(padding="x" * 9000)
    with pytest.raises(TokenInvalid):
        attack.verify(attack.signed(claims=claims))


async def test_refusals_reveal_no_key_material(attack: Attack):
    response = await attack.rs.get("/whoami", headers=bearer(attack.signed(key=None) + "x"))
    assert response.status_code == 401
    assert attack.signing.public_jwk()["x"] not in response.text


def test_verify_rejects_non_strings():
    keys = KeySet([SigningKey.generate(0)]).public_keys()
    for value in (None, b"a.b.c", 7, ""):
        with pytest.raises(TokenInvalid):
            verify_access_token(value, keys=keys, issuer=ISSUER, audience=AUDIENCE, now=0)  # type: ignore[arg-type]


# --- ambiguous or insane claims: refused by every keyproof verifier ---------------------

EXPECT = {
    "service": "Acme Escrow",
    "audience": AUDIENCE,
    "type": "escrow.release",
    "object": "escrow-42",
    "scope": "escrow:release",
}


async def _issuer_verdicts(attack: Attack, token: str) -> tuple[bool, int, bool]:
    """(introspection says active, /v1/actions/verify status, revocation stored its jti)."""
    issuer = attack.env.issuer
    introspected = await issuer.post(
        "/v1/introspect", data={"token": token}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    action = await issuer.post(
        "/v1/actions/verify",
        json={"expect": EXPECT, "action": {}, "signature": "x"},
        headers=bearer(token),
    )
    before = await attack.env.store.count(Kind.REVOKED)
    assert (await issuer.post("/v1/revoke", data={"token": token})).status_code == 200
    stored = await attack.env.store.count(Kind.REVOKED) > before
    return introspected.json()["active"], action.status_code, stored


async def refused_everywhere(attack: Attack, token: str) -> None:
    """Refused by verify_access_token, the guard, introspection, actions and revocation."""
    await attack.refused(token)
    assert await _issuer_verdicts(attack, token) == (False, 401, False)


async def test_control_honest_token_is_accepted_by_every_verifier(attack: Attack):
    token = attack.signed()
    await attack.accepted(token)
    # The action itself is malformed: the token got past verification.
    assert await _issuer_verdicts(attack, token) == (True, 400, True)


def _raw_segment(text: str) -> str:
    return b64(text.encode())


async def test_duplicate_header_member_alg_none_then_eddsa(attack: Attack):
    kid = attack.signing.kid
    for header in (
        f'{{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}',
        f'{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","kid":"{kid}"}}',
    ):
        signing_input = f"{_raw_segment(header)}.{segment(attack.claims())}"
        signature = attack.signing.private.sign(signing_input.encode())
        await refused_everywhere(attack, f"{signing_input}.{b64(signature)}")


async def test_duplicate_payload_member_two_subjects(attack: Attack):
    claims = json.dumps(attack.claims(), separators=(",", ":"))
    for payload in (
        '{"sub":"eip155:1:0x0000000000000000000000000000000000000001",' + claims[1:],
        claims[:-1] + ',"scope":"escrow:release admin:all"}',
        claims[:-1] + ',"cnf":{"jkt":"a","jkt":"b"}}',
    ):
        signing_input = f"{segment(attack.header())}.{_raw_segment(payload)}"
        signature = attack.signing.private.sign(signing_input.encode())
        await refused_everywhere(attack, f"{signing_input}.{b64(signature)}")


async def test_audience_as_a_list_holding_the_audience(attack: Attack):
    for aud in ([AUDIENCE], [AUDIENCE, OTHER_AUDIENCE], [OTHER_AUDIENCE, AUDIENCE]):
        await refused_everywhere(attack, attack.signed(claims=attack.claims(aud=aud)))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", 10**30),
        ("exp", 2**53),
        ("nbf", -1),
        ("iat", -(10**30)),
        ("exp", "lifetime_over_the_hard_cap"),
    ],
    ids=["exp_10_30", "exp_2_53", "nbf_negative", "iat_huge_negative", "lifetime_over_cap"],
)
async def test_time_claims_out_of_range(attack: Attack, claim: str, value: Any):
    now = int(attack.env.clock())
    if value == "lifetime_over_the_hard_cap":
        value = now + MAX_TOKEN_LIFETIME + 1
    await refused_everywhere(attack, attack.signed(claims=attack.claims(**{claim: value})))
