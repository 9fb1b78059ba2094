"""The curated public API: every public module exports exactly these names, sorted.

Modules and packages whose name starts with ``_`` are private; every other module is
listed here, so a new public name, or a new public module, is a decision made here.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import keyproof

EXPORTS: dict[str, list[str]] = {
    "keyproof": ["KeyproofError", "__version__"],
    "keyproof.accounts": [
        "SHIPPED_FAMILIES",
        "Account",
        "ChallengeText",
        "Family",
        "SignInMessage",
        "canonical_account",
        "canonical_chain",
        "families",
        "family_for_message",
        "parse_account",
        "register_family",
        "unregister_family",
    ],
    "keyproof.actions": [
        "ACTION_CONTEXT",
        "ACTION_TYPES",
        "Action",
        "ActionLimits",
        "ActionVerifier",
        "VerifiedAction",
        "signer_mismatch",
        "verify_canonical_json_action",
    ],
    "keyproof.chain": [
        "ERC6492_SUFFIX",
        "MAX_CONTRACT_SIGNATURE_BYTES",
        "MAX_CONTRACT_SIGNATURE_CHARS",
        "MAX_RPC_RESPONSE_BYTES",
        "ContractWalletConfig",
        "ContractWallets",
        "RpcObserver",
    ],
    "keyproof.crypto": ["didkey", "ed25519", "eip712", "encoding", "secp256k1"],
    "keyproof.crypto.didkey": ["DID_KEY_MAX_LENGTH", "KeyKind", "decode_did_key", "encode_did_key"],
    "keyproof.crypto.ed25519": [
        "PUBLIC_KEY_LENGTH",
        "SIGNATURE_LENGTH",
        "check_public_key",
        "verify",
    ],
    "keyproof.crypto.eip712": [
        "DOMAIN_FIELDS",
        "Types",
        "domain_separator",
        "domain_types",
        "encode_type",
        "hash_struct",
        "typed_data_digest",
    ],
    "keyproof.crypto.encoding": [
        "decode_base58",
        "decode_base58_key",
        "decode_base58_key_upto",
        "decode_base64url",
        "decode_base64url_key",
        "decode_hex0x",
        "decode_hex0x_key",
        "encode_base58",
        "encode_base64url",
        "encode_hex0x",
        "parse_base64url",
    ],
    "keyproof.crypto.secp256k1": [
        "CURVE_ORDER",
        "address_from_public_key",
        "canonical_public_key",
        "checksum_address",
        "decode_signature_hex",
        "eip191_digest",
        "keccak256",
        "recover_digest",
        "recover_eip191",
        "verify_digest",
        "verify_eip191",
        "verify_sha256_ecdsa",
    ],
    "keyproof.dpop": [
        "DPOP_ALGORITHMS",
        "DPOP_TYPE",
        "JKT_URI_PREFIX",
        "MAX_PROOF_BYTES",
        "DPoPProof",
        "ProofReplayCache",
        "access_token_hash",
        "check_sender",
        "named_jkts",
        "normalized_htu",
        "verify_proof",
    ],
    "keyproof.errors": [
        "ActionRejected",
        "BindingCode",
        "BindingMismatch",
        "ClientAuthenticationFailed",
        "ConfigurationError",
        "DPoPNonceRequired",
        "DPoPProofInvalid",
        "HeadersTooLarge",
        "InsufficientScope",
        "InvalidAccount",
        "InvalidAction",
        "InvalidRequest",
        "InvalidScope",
        "KeyproofError",
        "MalformedMessage",
        "MalformedSignature",
        "MethodNotAllowed",
        "NonceRejected",
        "NotFound",
        "OutsideValidity",
        "PayloadTooLarge",
        "ProofRejected",
        "RateLimitCode",
        "RateLimited",
        "RefreshRejected",
        "RequestTimeout",
        "SignatureInvalid",
        "TokenInvalid",
        "Unavailable",
        "UnsupportedGrantType",
        "UnsupportedMediaType",
        "all_codes",
    ],
    "keyproof.guard": [
        "BearerError",
        "JWKSCache",
        "KeyproofBackend",
        "KeyproofBearer",
        "KeyproofUser",
        "error_response",
        "on_error",
        "parse_jwks",
        "read_json_object",
        "require_scope",
        "www_authenticate",
    ],
    "keyproof.jose": [
        "ED25519_ALGORITHMS",
        "CompactJWS",
        "JoseError",
        "PublicKey",
        "jwk_thumbprint",
        "parse_compact",
        "public_jwk",
        "public_key_from_jwk",
        "sign_compact",
        "verify_signature",
    ],
    "keyproof.jwks": [
        "KID_PATTERN",
        "MAX_JWKS_BYTES",
        "MAX_JWKS_KEYS",
        "JWKSCache",
        "check_url",
        "parse_jwks",
    ],
    "keyproof.messages": ["agent", "recap", "siwe", "siws"],
    "keyproof.messages.agent": [
        "FAMILY",
        "HEADER_SUFFIX",
        "AgentFamily",
        "AgentMessage",
        "canonical_did_key",
        "parse",
    ],
    "keyproof.messages.recap": [
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
    ],
    "keyproof.messages.siwe": [
        "FAMILY",
        "HEADER_SUFFIX",
        "EthereumFamily",
        "SiweMessage",
        "parse",
        "verify",
    ],
    "keyproof.messages.siws": [
        "CHAIN_IDS",
        "CHAIN_REFERENCES",
        "FAMILY",
        "HEADER_SUFFIX",
        "SiwsMessage",
        "SiwsSignIn",
        "SolanaFamily",
        "parse",
        "require_challenge_fields",
    ],
    "keyproof.server": ["Service", "Settings", "build_components", "create_app"],
    "keyproof.server.app": [
        "BROWSER_ROUTES",
        "GRANT_TYPES",
        "ROUTES",
        "SIGNED_CHALLENGE_GRANT",
        "create_app",
        "create_app_from_environment",
    ],
    "keyproof.server.audit": ["AUDIT_FILE_NAME", "AuditLog", "Outcome"],
    "keyproof.server.cli": ["keys_command", "main", "migrate_command"],
    "keyproof.server.components": ["Components", "build_components", "build_service"],
    "keyproof.server.config": ["DEFAULT_CHAINS", "Settings"],
    "keyproof.server.keys": [
        "KEY_FILE_NAME",
        "RETIRE_AFTER",
        "KeyFile",
        "KeySet",
        "SigningKey",
        "jwk_thumbprint",
    ],
    "keyproof.server.minting": ["AccessToken", "mint_access_token"],
    "keyproof.server.origins": [
        "RelyingParty",
        "canonical_origin",
        "relying_parties",
        "relying_parties_json",
    ],
    "keyproof.server.policy": ["Policy", "parse_scope_string"],
    "keyproof.server.revocation": ["INTROSPECTED_CLAIMS", "IntrospectionClients", "Revocation"],
    "keyproof.server.service": ["Challenge", "KeySource", "Service", "SignInConfig"],
    "keyproof.server.sessions": [
        "EXPIRED_NOTICE",
        "REFRESH_TOKEN_PATTERN",
        "SessionRecord",
        "Sessions",
    ],
    "keyproof.stores": ["DEFAULT_REDIS_PREFIX", "Kind", "Store", "check_ttl", "open_store"],
    "keyproof.stores.base": ["Kind", "Store"],
    "keyproof.stores.memory": ["DEFAULT_MAX_ENTRIES", "PURGE_BATCH", "MemoryStore"],
    "keyproof.stores.ops": [
        "Add",
        "Get",
        "Hit",
        "Op",
        "Outcome",
        "Take",
        "Value",
        "check_ops",
        "outcome_of",
        "run_each",
        "run_steps",
    ],
    "keyproof.stores.postgres": [
        "DEFAULT_MAX_CONNECTIONS",
        "DEFAULT_SCHEMA",
        "DEFAULT_TIMEOUT",
        "SWEEP_BATCH",
        "SWEEP_BATCHES",
        "SWEEP_INTERVAL",
        "PostgresStore",
    ],
    "keyproof.stores.redis": ["SCAN_COUNT", "RedisStore"],
    "keyproof.stores.sqlite": [
        "BUSY_RETRY_DELAYS",
        "PURGE_BATCH",
        "PURGE_EVERY",
        "WAL_RESTART_FRAMES",
        "SqliteStore",
    ],
    "keyproof.testing": ["FrozenClock", "KeyproofServer", "ServerProcess", "free_port"],
    "keyproof.tokens": [
        "ACCESS_TOKEN_TYPE",
        "DEFAULT_LEEWAY",
        "JWKS_MAX_AGE",
        "MAX_TOKEN_BYTES",
        "MAX_TOKEN_LIFETIME",
        "MAX_VERIFY_LEEWAY",
        "REQUIRED_CLAIMS",
        "confirmation_jkt",
        "verify_access_token",
    ],
}


def public_modules() -> list[str]:
    found = pkgutil.walk_packages(keyproof.__path__, "keyproof.")
    names = (info.name for info in found)
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


def isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ``ruff``'s RUF022 keeps."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def test_every_public_module_is_listed():
    assert sorted(EXPORTS) == sorted(["keyproof", *public_modules()])


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_module_exports_exactly_its_names(name: str):
    module = importlib.import_module(name)
    assert list(module.__all__) == EXPORTS[name]
    assert EXPORTS[name] == sorted(EXPORTS[name], key=isort_key), f"{name}.__all__ is unsorted"
    for attribute in EXPORTS[name]:
        found = hasattr(module, attribute) or importlib.util.find_spec(f"{name}.{attribute}")
        assert found, f"{name}.{attribute} is exported but missing"


def test_server_names_resolve_lazily():
    import keyproof.server

    assert keyproof.server.Settings.__name__ == "Settings"
    assert keyproof.server.create_app.__name__ == "create_app"
    with pytest.raises(AttributeError):
        _ = keyproof.server.not_a_name  # type: ignore[attr-defined]


def test_readme_api_table_names_the_same():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Public API", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in re.findall(r"^\| `([\w.]+)` \| (.*) \|$", section, re.MULTILINE):
        table[row[0]] = re.findall(r"`(\w+)`", row[1])
    assert table == EXPORTS
