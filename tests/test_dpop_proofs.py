"""DPoP proofs (RFC 9449 §4.3) made by PyJWT and by hand: what is accepted, and one named
test per way a proof can be wrong."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproof import jose
from keyproof.dpop import (
    MAX_AGE,
    MAX_FUTURE,
    ProofReplayCache,
    access_token_hash,
    normalized_htu,
    verify_proof,
)
from keyproof.errors import DPoPProofInvalid
from keyproof.stores.base import Kind
from keyproof.stores.memory import MemoryStore

from conftest import START, FrozenClock

URL = "https://auth.example.com/v1/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Holder:
    """A client key and the proofs it makes, with PyJWT doing the signing."""

    def __init__(self, kind: str = "ES256") -> None:
        self.alg = kind
        if kind == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = Ed25519PrivateKey.generate()
        self.public_jwk = jose.public_jwk(self.private.public_key())

    @property
    def jkt(self) -> str:
        return jose.jwk_thumbprint(self.private.public_key())

    def claims(self, **changes: Any) -> dict[str, Any]:
        claims = {"jti": secrets.token_urlsafe(18), "htm": "POST", "htu": URL, "iat": START}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def proof(self, headers: dict[str, Any] | None = None, **changes: Any) -> str:
        header = {"typ": "dpop+jwt", "jwk": self.public_jwk, **(headers or {})}
        alg = "EdDSA" if self.alg == "Ed25519" else self.alg
        return jwt.encode(self.claims(**changes), self.private, algorithm=alg, headers=header)


def verify(proof: str | None, **options: Any) -> Any:
    arguments: dict[str, Any] = {
        "method": "POST",
        "url": URL,
        "now": START,
        "access_token": None,
        "jkt": None,
    }
    arguments.update(options)
    return verify_proof(proof, **arguments)


def refused(proof: str | None, **options: Any) -> str:
    with pytest.raises(DPoPProofInvalid) as caught:
        verify(proof, **options)
    assert caught.value.status == 400
    return caught.value.description


@pytest.mark.parametrize("kind", ["ES256", "Ed25519"])
def test_a_proof_from_pyjwt_is_accepted(kind: str):
    holder = Holder(kind)
    proof = verify(holder.proof())
    assert proof.jkt == holder.jkt
    assert proof.iat == START


def test_a_proof_signed_with_the_rfc_9864_name_is_accepted():
    holder = Holder("Ed25519")
    header = {"alg": "Ed25519", "typ": "dpop+jwt", "jwk": holder.public_jwk}
    proof = jose.sign_compact(header, holder.claims(), holder.private)
    assert verify(proof).jkt == holder.jkt


def test_an_es256_proof_from_sign_compact_verifies_with_pyjwt_and_here():
    holder = Holder("ES256")
    header = {"alg": "ES256", "typ": "dpop+jwt", "jwk": holder.public_jwk}
    proof = jose.sign_compact(header, holder.claims(), holder.private)
    signature = jose.parse_compact(proof, max_length=4096).signature
    assert len(signature) == 64  # R ‖ S, as WebCrypto signs, not DER
    public = holder.private.public_key()
    options = {"verify_iat": False}  # START is a fixed instant
    assert jwt.decode(proof, public, algorithms=["ES256"], options=options)["htu"] == URL
    assert verify(proof).jkt == holder.jkt


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("ES256", Ed25519PrivateKey.generate()),
        ("Ed25519", ec.generate_private_key(ec.SECP256R1())),
        ("ES256", ec.generate_private_key(ec.SECP384R1())),
        ("EdDSA", Ed25519PrivateKey.generate()),
        ("HS256", b"secret"),
    ],
    ids=["es256-ed25519-key", "ed25519-p256-key", "es256-p384-key", "old-name", "hs256"],
)
def test_sign_compact_signs_only_with_the_key_its_alg_names(alg: str, key: Any):
    with pytest.raises(ValueError, match="signs with"):
        jose.sign_compact({"alg": alg, "typ": "dpop+jwt"}, {"jti": "x"}, key)


def test_thumbprint_matches_rfc_8037_example():
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    key = jose.public_key_from_jwk(jwk)
    assert jose.jwk_thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_the_query_and_fragment_of_the_uri_are_ignored():
    holder = Holder()
    verify(holder.proof(htu="https://AUTH.example.com:443/v1/token"), url=URL + "?x=1#y")
    assert normalized_htu("HTTPS://Auth.Example.com") == "https://auth.example.com/"


UNUSABLE_URIS = [
    "not a url",
    "mailto:someone",
    "ftp://auth.example.com/v1/token",
    "https://user:pass@auth.example.com/v1/token",
    "https://user@auth.example.com/v1/token",
    "http://[::1",
    "/v1/token",
]


@pytest.mark.parametrize("uri", UNUSABLE_URIS)
def test_unusable_uris_never_match_each_other(uri: str):
    """Both sides unusable must not compare equal: each normalizes to nothing."""
    holder = Holder()
    for other in UNUSABLE_URIS:
        assert "not an absolute http(s) URI" in refused(holder.proof(htu=other), url=uri)


@pytest.mark.parametrize("uri", UNUSABLE_URIS)
def test_a_proof_naming_an_unusable_uri_is_for_another_uri(uri: str):
    holder = Holder()
    assert "another URI" in refused(holder.proof(htu=uri))


def test_proof_without_dpop_typ_is_refused():
    holder = Holder()
    assert refused(holder.proof(headers={"typ": "JWT"}))


def test_proof_with_alg_none_is_refused():
    holder = Holder()
    header = b64(json.dumps({"alg": "none", "typ": "dpop+jwt", "jwk": holder.public_jwk}).encode())
    payload = b64(json.dumps(holder.claims()).encode())
    assert refused(f"{header}.{payload}.AAAA")


def test_proof_with_symmetric_hs256_is_refused():
    holder = Holder()
    secret = secrets.token_bytes(32)
    jwk = {"kty": "oct", "k": b64(secret)}
    proof = jwt.encode(
        holder.claims(), secret, algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": jwk}
    )
    assert refused(proof)


def test_proof_with_a_private_key_in_its_jwk_is_refused():
    holder = Holder("Ed25519")
    seed = holder.private.private_bytes_raw()
    assert refused(holder.proof(headers={"jwk": {**holder.public_jwk, "d": b64(seed)}}))


def test_proof_whose_alg_does_not_fit_its_key_is_refused():
    holder = Holder("Ed25519")
    other = Holder("ES256")
    forged = holder.proof(headers={"jwk": other.public_jwk})
    assert refused(forged)


def test_proof_signed_by_another_key_than_its_jwk_is_refused():
    holder, thief = Holder(), Holder()
    assert refused(thief.proof(headers={"jwk": holder.public_jwk}))


def test_proof_for_another_method_is_refused():
    assert "method" in refused(Holder().proof(htm="GET"))


def test_proof_for_another_url_is_refused():
    assert "URI" in refused(Holder().proof(htu="https://auth.example.com/v1/revoke"))
    assert "URI" in refused(Holder().proof(htu="http://auth.example.com/v1/token"))


@pytest.mark.parametrize("iat", [START - MAX_AGE - 1, START + MAX_FUTURE + 1])
def test_stale_or_future_proof_is_refused(iat: int):
    assert "old" in refused(Holder().proof(iat=iat))


@pytest.mark.parametrize("iat", [START - MAX_AGE, START + MAX_FUTURE])
def test_proof_at_the_edges_of_the_window_is_accepted(iat: int):
    verify(Holder().proof(iat=iat))


@pytest.mark.parametrize("missing", ["jti", "htm", "htu", "iat"])
def test_proof_missing_a_claim_is_refused(missing: str):
    assert refused(Holder().proof(**{missing: None}))


def test_proof_with_iat_as_text_or_a_short_jti_is_refused():
    assert refused(Holder().proof(iat=str(START)))
    assert refused(Holder().proof(jti="short"))


def test_ath_of_another_token_is_refused():
    holder = Holder()
    proof = holder.proof(ath=access_token_hash("another.token.value"))
    assert "access token" in refused(proof, access_token="the.token.value", jkt=holder.jkt)


def test_proof_without_ath_for_a_token_is_refused():
    holder = Holder()
    assert refused(holder.proof(), access_token="the.token.value", jkt=holder.jkt)


def test_proof_with_ath_at_the_token_endpoint_is_refused():
    assert refused(Holder().proof(ath=access_token_hash("x.y.z")))


def test_proof_of_another_key_than_the_bound_one_is_refused():
    holder, thief = Holder(), Holder()
    token = "the.token.value"
    proof = thief.proof(ath=access_token_hash(token))
    assert "another key" in refused(proof, access_token=token, jkt=holder.jkt)
    accepted = verify(
        holder.proof(ath=access_token_hash(token)), access_token=token, jkt=holder.jkt
    )
    assert accepted.jkt == holder.jkt


def test_proof_with_repeated_header_members_is_refused():
    holder = Holder("Ed25519")
    jwk = json.dumps(holder.public_jwk)
    header = f'{{"typ":"dpop+jwt","alg":"none","alg":"EdDSA","jwk":{jwk}}}'.encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(holder.claims()).encode())}"
    signature = b64(holder.private.sign(signing_input.encode()))
    assert refused(f"{signing_input}.{signature}")


def test_padded_proof_is_refused():
    proof = Holder().proof()
    head, rest = proof.split(".", 1)
    assert refused(f"{head}=.{rest}")


def test_es256_signature_with_zero_or_out_of_range_scalars_is_refused():
    holder = Holder()
    head, payload, _ = holder.proof().split(".")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    for r, s in ((0, 1), (1, 0), (order, 1)):
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert refused(f"{head}.{payload}.{b64(signature)}")


def test_p256_key_off_the_curve_is_refused():
    holder = Holder()
    bad = dict(holder.public_jwk, y=b64(bytes(31) + b"\x01"))
    assert refused(holder.proof(headers={"jwk": bad}))


def test_small_order_ed25519_key_is_refused():
    holder = Holder("Ed25519")
    small_order = {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(32))}
    assert refused(holder.proof(headers={"jwk": small_order}))


def test_missing_proof_is_refused():
    assert "required" in refused(None)


async def test_proof_replay_is_refused_on_every_replica_sharing_the_store(clock: FrozenClock):
    store = MemoryStore(clock=clock)
    proof = verify(Holder().proof())
    await ProofReplayCache(store).use(proof, START)
    with pytest.raises(DPoPProofInvalid, match="already used"):
        await ProofReplayCache(store).use(proof, START)
    clock.advance(MAX_AGE + MAX_FUTURE)  # by now its iat is out of the window anyway
    assert await store.count(Kind.DPOP_PROOF) == 0


def test_access_token_hash_matches_rfc_9449_example():
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=600)
    | st.from_regex(
        r"[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,90}", fullmatch=True
    )
)
def test_any_text_as_a_proof_is_invalid_dpop_proof_and_nothing_else(text: str):
    with pytest.raises(DPoPProofInvalid):
        verify(text)


@settings(max_examples=200, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["typ", "alg", "jwk", "crit", "kid"]),
        st.none()
        | st.integers()
        | st.text(max_size=20)
        | st.dictionaries(st.text(max_size=4), st.text(max_size=50), max_size=4),
        max_size=5,
    )
)
def test_any_header_on_a_real_signature_is_refused_or_accepted_never_crashes(
    header: dict[str, Any],
):
    holder = Holder("Ed25519")
    head = {"alg": "Ed25519", "typ": "dpop+jwt", "jwk": holder.public_jwk, **header}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(holder.claims()).encode())}"
    proof = f"{signing_input}.{b64(holder.private.sign(signing_input.encode()))}"
    with contextlib.suppress(DPoPProofInvalid):  # anything else fails the test
        assert verify(proof).jkt == holder.jkt
