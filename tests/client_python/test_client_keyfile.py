"""Key files: created 0600, never overwritten, refused when others may read them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from keyproof_client import (
    KEY_TYPES,
    KeyproofClientError,
    generate_key,
    key_from_env,
    load_key,
    parse_key,
    save_key,
)

from keyproof.crypto.encoding import encode_base58, encode_base64url


def code_of(call, *args) -> str:
    with pytest.raises(KeyproofClientError) as refused:
        call(*args)
    return refused.value.code


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_saved_key_loads_back_the_same(tmp_path: Path, key_type: str):
    key, path = generate_key(key_type), tmp_path / "agent.key"
    save_key(key, path)
    loaded = load_key(path)
    assert (loaded.type, loaded.did, loaded.account()) == (key.type, key.did, key.account())
    assert loaded.sign("hello") == key.sign("hello")  # ed25519 and RFC 6979 are deterministic
    assert json.loads(path.read_text()) == {"type": key_type, "secret": key.secret_text()}


def test_a_key_file_is_created_0600_whatever_the_umask(tmp_path: Path):
    previous = os.umask(0)
    try:
        save_key(generate_key("ed25519"), tmp_path / "agent.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "agent.key").stat().st_mode) == 0o600


def test_an_existing_file_is_never_overwritten(tmp_path: Path):
    path = tmp_path / "agent.key"
    path.write_text("precious")
    assert code_of(save_key, generate_key("solana"), path) == "key_file_exists"
    assert path.read_text() == "precious"


def test_a_symlink_is_not_followed_to_write_a_key(tmp_path: Path):
    target, link = tmp_path / "elsewhere", tmp_path / "agent.key"
    link.symlink_to(target)
    assert code_of(save_key, generate_key("ed25519"), link) == "key_file_exists"
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601])
def test_a_key_file_others_may_access_is_refused(tmp_path: Path, mode: int):
    path = tmp_path / "agent.key"
    save_key(generate_key("ethereum"), path)
    path.chmod(mode)
    with pytest.raises(KeyproofClientError) as refused:
        load_key(path)
    assert refused.value.code == "key_file_exposed"
    assert f"{mode:04o}" in refused.value.description and "chmod 600" in refused.value.description


def test_a_read_only_key_file_of_its_owner_loads(tmp_path: Path):
    path = tmp_path / "agent.key"
    save_key(generate_key("secp256k1"), path)
    path.chmod(0o400)
    assert load_key(path).type == "secp256k1"


def test_what_is_no_key_file_is_refused(tmp_path: Path):
    assert code_of(load_key, tmp_path / "absent.key") == "key_not_found"
    (tmp_path / "dir").mkdir(mode=0o700)
    assert code_of(load_key, tmp_path / "dir") == "key_not_found"
    assert code_of(load_key, os.devnull) == "invalid_key"  # not a regular file


def test_an_oversized_key_file_is_refused(tmp_path: Path):
    path = tmp_path / "agent.key"
    path.write_text(" " * 5000)
    path.chmod(0o600)
    assert code_of(load_key, path) == "invalid_key"


def test_the_key_variable_holds_a_key_file_text(monkeypatch: pytest.MonkeyPatch):
    key = generate_key("solana")
    monkeypatch.setenv("KEYPROOF_KEY", json.dumps({"type": "solana", "secret": key.secret_text()}))
    assert key_from_env().account() == key.account()
    monkeypatch.setenv("AGENT_KEY", json.dumps({"type": "solana", "secret": key.secret_text()}))
    assert key_from_env("AGENT_KEY").did == key.did
    monkeypatch.delenv("KEYPROOF_KEY")
    assert code_of(key_from_env) == "key_not_found"


SECRET_32 = bytes(range(1, 33))
BAD_DOCUMENTS = {
    "not json": "ed25519 AAAA",
    "a list": "[]",
    "extra member": json.dumps({"type": "ed25519", "secret": encode_base64url(SECRET_32), "n": 1}),
    "unknown type": json.dumps({"type": "rsa", "secret": encode_base64url(SECRET_32)}),
    "secret not a string": json.dumps({"type": "ed25519", "secret": 7}),
    "ed25519 too short": json.dumps({"type": "ed25519", "secret": encode_base64url(bytes(31))}),
    "ed25519 padded": json.dumps({"type": "ed25519", "secret": encode_base64url(SECRET_32) + "="}),
    "ethereum in base64url": json.dumps(
        {"type": "ethereum", "secret": encode_base64url(SECRET_32)}
    ),
    "ethereum zero": json.dumps({"type": "ethereum", "secret": "0x" + "00" * 32}),
    "secp256k1 beyond the order": json.dumps(
        {"type": "secp256k1", "secret": encode_base64url(b"\xff" * 32)}
    ),
    "solana seed only": json.dumps({"type": "solana", "secret": encode_base58(SECRET_32)}),
    "solana wrong public half": json.dumps(
        {"type": "solana", "secret": encode_base58(SECRET_32 + bytes(32))}
    ),
}


@pytest.mark.parametrize("text", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_what_is_not_a_key_is_refused_without_echoing_it(text: str):
    with pytest.raises(KeyproofClientError) as refused:
        parse_key(text)
    assert refused.value.code == "invalid_key"
    secret = json.loads(text).get("secret") if text.startswith("{") else text
    assert str(secret) not in str(refused.value)
