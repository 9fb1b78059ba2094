"""Settings: precedence, validation at startup, nothing secret in repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyproof.errors import ConfigurationError
from keyproof.server.cli import main
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet


def test_defaults_derive_from_host_and_port():
    settings = Settings(port=9000)
    assert settings.domain == "127.0.0.1:9000"
    assert settings.uri == settings.issuer == "http://127.0.0.1:9000"
    assert settings.audiences == ("http://127.0.0.1:9000",)
    assert settings.store.startswith("sqlite:///")


def test_flags_beat_environment_beat_file(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text('[keyproof]\nport = 7000\ndomain = "file.example"\ntoken_ttl = 120\n')
    env = {"KEYPROOF_CONFIG": str(config), "KEYPROOF_DOMAIN": "env.example"}
    settings = Settings.load({"port": 7100}, env)
    assert (settings.port, settings.domain, settings.token_ttl) == (7100, "env.example", 120)


def test_environment_round_trip_reproduces_settings(tmp_path: Path):
    original = Settings(port=7200, data_dir=tmp_path, chains=("eip155:1", "eip155:10"))
    assert Settings.load(env=original.as_environment()) == original


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": 70000}, "port"),
        ({"workers": 0}, "workers"),
        ({"token_ttl": 7200}, "token_ttl"),
        ({"uri": "ftp://x"}, "uri"),
        ({"trusted_proxies": "not-an-ip"}, "trusted proxy"),
        ({"port": "eighty"}, "integer"),
        ({"nonsense": 1}, "unknown settings"),
        ({"workers": 2, "store": "memory://"}, "memory:// is per process"),
        ({"port": 0}, "port"),
        ({"domain": "x/y"}, "domain"),
        ({"statement": 'say "hi"'}, "statement"),
        ({"statement": "two\nlines"}, "statement"),
        ({"chains": "cosmos:cosmoshub-4"}, "not supported"),
        ({"chains": "eip155:01"}, "invalid"),
        ({"chains": "solana:nowhere"}, "invalid"),
    ],
    ids=[
        "port",
        "workers",
        "token_ttl_over_cap",
        "uri_scheme",
        "proxy",
        "port_type",
        "unknown",
        "memory_store_with_workers",
        "port_zero",
        "domain_not_authority",
        "statement_quote",
        "statement_newline",
        "unknown_chain_namespace",
        "eip155_leading_zero",
        "unknown_solana_cluster",
    ],
)
def test_invalid_settings_fail_with_a_clear_message(flags, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(flags, {})


def test_invalid_policy_fails_at_startup(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('[policy]\nscopes = ["a:b"]\ndefault = ["c:d"]\n')
    with pytest.raises(ConfigurationError) as refused:
        Settings.load({"config": str(config)}, {})
    assert refused.value.code == "invalid_policy"


def test_cli_reports_invalid_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "99999"]) == 2
    assert "invalid_setting" in capsys.readouterr().err


def test_repr_of_settings_and_keys_holds_no_private_key(tmp_path: Path):
    keys = KeySet.load_or_create(tmp_path / KEY_FILE_NAME)
    private_d = (tmp_path / KEY_FILE_NAME).read_text().split('"d": "')[1].split('"')[0]
    settings = Settings(data_dir=tmp_path)
    for text in (repr(settings), repr(keys), repr(keys.keys[0]), str(keys.jwks())):
        assert private_d not in text
    assert (tmp_path / KEY_FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_chains_are_canonicalized():
    settings = Settings(chains=("eip155:10", "solana:mainnet", "did:key"))
    assert settings.chains == (
        "eip155:10",
        "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        "did:key",
    )


def test_domain_defaults_to_the_configured_uri():
    settings = Settings(uri="https://login.example.com")
    assert settings.domain == "login.example.com"
    assert settings.issuer == "https://login.example.com"


def test_repr_hides_store_credentials():
    settings = Settings(store="redis://:s3cret-pass@127.0.0.1:6379/0")
    assert "s3cret-pass" not in repr(settings)
    assert "s3cret-pass" not in str(settings.public_summary())


def test_data_dir_is_private(tmp_path: Path):
    KeySet.load_or_create(tmp_path / "fresh" / KEY_FILE_NAME)
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700


def test_policy_account_on_a_chain_not_allowed_fails_at_startup(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text(
        '[keyproof]\nchains = ["eip155:1"]\n'
        '[policy]\nscopes = ["a:b"]\n[policy.accounts]\n'
        '"eip155:137:0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045" = ["a:b"]\n'
    )
    with pytest.raises(ConfigurationError, match="not allowed"):
        Settings.load({"config": str(config)}, {})
