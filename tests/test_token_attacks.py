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
from keyproof.tokens import verify_access_token

from conftest import FrozenClock
from test_guard import AUDIENCE, ISSUER, OTHER_AUDIENCE, SUBJECT, GuardEnv, bearer, guard_env


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


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "Ed25519", "eddsa"])
async def test_other_algorithms_with_a_real_eddsa_signature(attack: Attack, alg: str):
    await attack.refused(attack.signed(attack.header(alg=alg)))


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
