"""The operator's commands: ``--version``, ``check-config`` and key commands that never
create state. In process, through ``keyproof.server.cli.main``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyproof import __version__
from keyproof.server.cli import main
from keyproof.server.keys import KEY_FILE_NAME, KeySet


@pytest.fixture(autouse=True)
def no_keyproof_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("KEYPROOF_")]:
        monkeypatch.delenv(name)


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"keyproof {__version__}\n"


@pytest.mark.parametrize("action", ["show", "rotate", "retire"])
def test_keys_command_on_a_mistyped_data_dir_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
):
    typo = tmp_path / "keyprof"
    assert main(["keys", action, "--data-dir", str(typo)]) == 2
    assert not typo.exists()
    err = capsys.readouterr().err
    assert err.startswith(f"keyproof: invalid_setting: data_dir {typo} does not exist")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("action", ["show", "rotate", "retire"])
def test_keys_command_without_a_key_file_creates_no_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
):
    assert main(["keys", action, "--data-dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []
    assert "invalid_key_file: no key file at" in capsys.readouterr().err


def test_keys_show_refuses_a_key_file_open_to_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / KEY_FILE_NAME
    KeySet.load_or_create(path)
    path.chmod(0o604)
    assert main(["keys", "show", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"keyproof: insecure_permissions: {path} has mode 0604")
    assert err.rstrip().endswith(f"chmod 600 {path}")


# --- check-config ------------------------------------------------------------------------


def test_check_config_accepts_a_valid_configuration_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    config = tmp_path / "keyproof.toml"
    config.write_text('[keyproof]\nuri = "https://auth.example.com"\ntoken_ttl = 300\n')
    data = tmp_path / "state"
    monkeypatch.setenv("KEYPROOF_CHALLENGE_TTL", "120")
    code = main(["check-config", "--config", str(config), "--data-dir", str(data)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("keyproof: configuration is valid: issuer https://auth.example.com")
    assert not data.exists()


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("flag", "port must be 1..65535"),
        ("environment", "token_ttl must be 10..3600 seconds"),
        ("toml", "unknown settings: ['tokenttl']"),
    ],
)
def test_check_config_reports_an_invalid_setting_wherever_it_comes_from(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    says: str,
):
    config = tmp_path / "keyproof.toml"
    config.write_text("[keyproof]\ntokenttl = 60\n" if source == "toml" else "")
    monkeypatch.setenv("KEYPROOF_CONFIG", str(config))
    if source == "environment":
        monkeypatch.setenv("KEYPROOF_TOKEN_TTL", "7200")
    args = ["check-config", "--data-dir", str(tmp_path / "state")]
    if source == "flag":
        args += ["--port", "70000"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"keyproof: invalid_setting: {says}\n"


def test_check_config_warns_about_a_misspelt_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KEYPROOF_TOKENTTL", "60")
    monkeypatch.setenv("KEYPROOF_NOT_A_SETTING_AT_ALL", "1")
    assert main(["check-config", "--data-dir", str(tmp_path)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        "keyproof: warning: unknown environment variable KEYPROOF_NOT_A_SETTING_AT_ALL is ignored",
        "keyproof: warning: unknown environment variable KEYPROOF_TOKENTTL is ignored "
        "(did you mean KEYPROOF_TOKEN_TTL?)",
    ]


def test_check_config_refuses_existing_state_open_to_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    KeySet.load_or_create(tmp_path / KEY_FILE_NAME)
    tmp_path.chmod(0o750)
    assert main(["check-config", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.rstrip().endswith(f"chmod 700 {tmp_path}")
