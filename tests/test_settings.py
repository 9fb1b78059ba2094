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


# --- smart-contract wallets: rpc_urls and their bounds ----------------------------------

BASE_RPC = "https://base.example/v2/api-key-s3cret"


def test_rpc_urls_from_toml_and_environment_round_trip(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text(
        '[keyproof]\nchains = ["eip155:1", "eip155:8453"]\n'
        f'rpc_urls = {{ "eip155:8453" = "{BASE_RPC}", "eip155:1" = "http://127.0.0.1:8545" }}\n'
        "rpc_timeout = 2.5\nrpc_gas_cap = 2000000\n"
        'erc6492_factories = ["0x0BA5ED0c6AA8c49038F819E587E2633c4A9F428a"]\n'
    )
    settings = Settings.load({"config": str(config), "data_dir": str(tmp_path)}, {})
    assert settings.rpc_urls == {"eip155:8453": BASE_RPC, "eip155:1": "http://127.0.0.1:8545"}
    assert (settings.rpc_timeout, settings.rpc_gas_cap) == (2.5, 2_000_000)
    assert Settings.load(env=settings.as_environment()) == settings
    wallets = settings.contract_wallets()
    assert wallets.factories == {"0x0BA5ED0c6AA8c49038F819E587E2633c4A9F428a"}


def test_rpc_urls_never_show(tmp_path: Path):
    settings = Settings(chains=("eip155:8453",), rpc_urls={"eip155:8453": BASE_RPC})
    for text in (repr(settings), str(settings.public_summary()), repr(settings.contract_wallets())):
        assert "s3cret" not in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rpc_urls": {"eip155:8453": "http://base.example"}}, "https unless its host is loopback"),
        ({"rpc_urls": {"eip155:8453": "ftp://base.example"}}, "absolute https URL"),
        ({"rpc_urls": {"eip155:10": BASE_RPC}}, "eip155:10, which is not in chains"),
        ({"rpc_urls": {"solana:mainnet": BASE_RPC}}, "is not an eip155:<chain id>"),
        ({"rpc_urls": {"eip155:08453": BASE_RPC}}, "is not an eip155:<chain id>"),
        ({"rpc_urls": "eip155:8453"}, "chain=url"),
        ({"rpc_timeout": 0}, "rpc_timeout"),
        ({"rpc_timeout": "soon"}, "number"),
        ({"rpc_gas_cap": 100_000}, "rpc_gas_cap"),
        ({"rpc_gas_cap": 30_000_000}, "rpc_gas_cap"),
        ({"erc6492_factories": "0x1234"}, "erc6492_factories"),
    ],
    ids=[
        "plain_http_remote",
        "not_http",
        "chain_not_allowed",
        "not_eip155",
        "leading_zero",
        "env_without_url",
        "timeout_zero",
        "timeout_text",
        "gas_cap_too_low",
        "gas_cap_over_eip7825",
        "factory_not_an_address",
    ],
)
def test_invalid_rpc_settings_fail_at_startup(values: dict[str, object], message: str):
    flags = {"chains": ["eip155:1", "eip155:8453"], **values}
    with pytest.raises(ConfigurationError, match=message) as refused:
        Settings.load(flags, {})
    assert "s3cret" not in str(refused.value)


def test_session_settings_from_toml_and_environment_round_trip(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text("[keyproof]\nsession_ttl = 3600\nsession_idle_ttl = 600\ndpop_nonce = true\n")
    from_file = Settings.load({"config": str(config)}, {})
    assert (from_file.session_ttl, from_file.session_idle_ttl, from_file.dpop_nonce) == (
        3600,
        600,
        True,
    )
    env = {"KEYPROOF_DPOP_NONCE": "false", "KEYPROOF_SESSION_TTL": "7200"}
    from_env = Settings.load({"config": str(config)}, env)
    assert (from_env.session_ttl, from_env.dpop_nonce) == (7200, False)
    assert Settings.load(env=from_file.as_environment()) == from_file


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"session_ttl": 299}, "session_ttl"),
        ({"session_ttl": 30 * 86400 + 1}, "session_ttl"),
        ({"session_idle_ttl": 59}, "session_idle_ttl"),
        ({"session_ttl": 3600, "session_idle_ttl": 3601}, "session_idle_ttl"),
        ({"dpop_nonce": "yes"}, "dpop_nonce must be true or false"),
        ({"dpop_nonce": 1}, "dpop_nonce must be true or false"),
        ({"session_ttl": True}, "session_ttl must be an integer"),
    ],
    ids=[
        "session_too_short",
        "session_over_30_days",
        "idle_too_short",
        "idle_longer_than_the_session",
        "nonce_flag_a_word",
        "nonce_flag_a_number",
        "session_ttl_a_boolean",
    ],
)
def test_invalid_session_settings_fail_at_startup(values: dict[str, object], message: str):
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.load(values, {})
    assert caught.value.code == "invalid_setting"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('dpop_scopes = ["escrow:nope"]', "dpop_scopes: unknown scope"),
        ('dpop_scopes = "profile:read"', "policy.dpop_scopes must be a list"),
        ('dpop_required = "yes"', "policy.dpop_required must be true or false"),
    ],
    ids=["unknown_scope", "not_a_list", "required_not_a_boolean"],
)
def test_invalid_dpop_policy_fails_at_startup(tmp_path: Path, table: str, message: str):
    config = tmp_path / "keyproof.toml"
    config.write_text(f'[policy]\nscopes = ["profile:read"]\n{table}\n')
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.load({"config": str(config)}, {})
    assert caught.value.code == "invalid_policy"


def test_dpop_policy_from_toml(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text(
        '[policy]\nscopes = ["profile:read", "escrow:release"]\n'
        'dpop_scopes = ["escrow:release"]\ndpop_required = false\n'
    )
    policy = Settings.load({"config": str(config)}, {}).policy
    assert policy.dpop_scopes == frozenset({"escrow:release"})
    assert policy.needs_dpop(["escrow:release", "profile:read"])
    assert not policy.needs_dpop(["profile:read"])
