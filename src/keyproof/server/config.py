"""One frozen settings object, from command-line flags, ``KEYPROOF_*`` and a TOML file.

Precedence: flags > environment > configuration file > defaults. Every value is
validated here, so an invalid setting fails at startup with a clear message instead
of surfacing on the first request.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyproof.accounts import canonical_account, canonical_chain
from keyproof.chain import ContractWalletConfig
from keyproof.errors import ConfigurationError, KeyproofError
from keyproof.messages._fields import check_authority, check_statement
from keyproof.server.origins import (
    RelyingParty,
    canonical_origin,
    relying_parties,
    relying_parties_json,
)
from keyproof.server.policy import Policy
from keyproof.tokens import MAX_TOKEN_LIFETIME

__all__ = ["DEFAULT_CHAINS", "Settings"]

DEFAULT_CHAINS = ("eip155:1", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "did:key")
ENV_PREFIX = "KEYPROOF_"
LIST_SETTINGS = frozenset(
    {"audiences", "chains", "trusted_proxies", "cors_origins", "erc6492_factories"}
)
# name -> (separator of key and value in the environment, what the keys and values are)
MAPPING_SETTINGS = {
    "introspection_clients": (":", "id:sha256hex", "client ids to strings"),
    "rpc_urls": ("=", "chain=url", "chains to URLs"),
}
FLOAT_SETTINGS = frozenset({"rpc_timeout"})
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,64}")
SHA256_HEX_PATTERN = re.compile(r"[0-9a-f]{64}")
INT_SETTINGS = frozenset(
    {
        "port",
        "workers",
        "challenge_ttl",
        "token_ttl",
        "clock_skew",
        "max_body_bytes",
        "action_horizon",
        "rate_window",
        "rpc_gas_cap",
    }
)
LIMIT_SETTINGS = frozenset(
    {
        "challenge_limit_per_ip",
        "challenge_limit_per_network",
        "failed_token_limit_per_ip",
        "failed_token_limit_per_network",
        "failed_token_limit_per_account",
        "max_challenges",
    }
)
PATH_SETTINGS = frozenset({"data_dir", "config", "audit_log"})
# Sessions: refresh-token lifetimes and DPoP server nonces (specs/protocol.md "Refresh").
SESSION_INT_SETTINGS = frozenset({"session_ttl", "session_idle_ttl"})
BOOL_SETTINGS = frozenset({"dpop_nonce"})
MAX_SESSION_TTL = 30 * 86400
OPERATION_INT_SETTINGS = frozenset(
    {"header_timeout", "max_header_bytes", "body_timeout", "max_connections", "metrics_port"}
)


@dataclass(frozen=True)
class Settings:
    """Validated keyproof configuration. Secrets are never part of ``repr``."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = Path(".keyproof")
    store: str = field(default="", repr=False)  # a Redis URL may carry a password
    domain: str = ""
    uri: str = ""
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    chains: tuple[str, ...] = DEFAULT_CHAINS
    statement: str = "Sign in with your key."
    challenge_ttl: int = 300
    token_ttl: int = 600
    clock_skew: int = 60
    action_horizon: int = 3600
    action_max_amount: str = "1000000000000000000000000"
    max_body_bytes: int = 16 * 1024
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: str = "x-forwarded-for"
    rate_window: int = 60
    challenge_limit_per_ip: int = 120
    challenge_limit_per_network: int = 960
    failed_token_limit_per_ip: int = 60
    failed_token_limit_per_network: int = 480
    failed_token_limit_per_account: int = 20
    max_challenges: int = 200_000
    audit_log: Path | None = None
    log_level: str = "info"
    policy: Policy = field(default_factory=Policy)
    # client id -> SHA-256 hex of its secret; only digests are stored, and not shown.
    introspection_clients: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Operations: slow clients are cut off, and /metrics may move to a private listener.
    header_timeout: int = 10
    max_header_bytes: int = 16 * 1024
    body_timeout: int = 10
    max_connections: int = 1000
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # Smart-contract wallets (EIP-1271, ERC-6492), asked with eth_call only. The URLs
    # often carry an API key: never shown.
    rpc_urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    rpc_timeout: float = 5.0
    rpc_gas_cap: int = 3_000_000
    erc6492_factories: tuple[str, ...] = ()
    config: Path | None = None
    # Browser apps (specs/protocol.md §6.1): who may call keyproof, and whose domain
    # a challenge requested from their origin carries.
    cors_origins: tuple[str, ...] = ()
    relying_parties: tuple[RelyingParty, ...] = ()
    # Sessions: a DPoP-bound sign-in gets a rotating refresh token, valid at most
    # session_ttl after the sign-in and session_idle_ttl after its last use.
    session_ttl: int = 86400
    session_idle_ttl: int = 7200
    dpop_nonce: bool = False

    def __post_init__(self) -> None:
        base = f"http://{_host_for_url(self.host)}:{self.port}"
        derived = {
            "store": f"sqlite:///{self.data_dir / 'keyproof.db'}",
            "uri": base,
            "domain": urlsplit(self.uri or base).netloc,
        }
        for name, value in derived.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        if not self.issuer:
            object.__setattr__(self, "issuer", self.uri)
        if not self.audiences:
            object.__setattr__(self, "audiences", (self.uri,))
        self._validate()

    def _validate(self) -> None:
        _require(1 <= self.port <= 65535, "port must be 1..65535")
        _require(1 <= self.workers <= 64, "workers must be 1..64")
        _require(
            self.workers == 1 or not self.store.startswith("memory:"),
            "memory:// is per process: use sqlite:// or redis:// with several workers",
        )
        _require(10 <= self.challenge_ttl <= 3600, "challenge_ttl must be 10..3600 seconds")
        _require(
            10 <= self.token_ttl <= MAX_TOKEN_LIFETIME,
            f"token_ttl must be 10..{MAX_TOKEN_LIFETIME} seconds",
        )
        _require(0 <= self.clock_skew <= 300, "clock_skew must be 0..300 seconds")
        _require(60 <= self.action_horizon <= 86400, "action_horizon must be 60..86400 seconds")
        _require(
            re.fullmatch(r"[1-9][0-9]{0,29}", self.action_max_amount) is not None,
            "action_max_amount must be a positive integer of at most 30 digits",
        )
        _require(1024 <= self.max_body_bytes <= 1 << 20, "max_body_bytes must be 1 KiB..1 MiB")
        _require(1 <= self.rate_window <= 86400, "rate_window must be 1..86400 seconds")
        for name in sorted(LIMIT_SETTINGS):
            _require(1 <= getattr(self, name) <= 10**9, f"{name} must be 1..1000000000")
        _require(
            self.forwarded_header in {"x-forwarded-for", "forwarded"},
            "forwarded_header must be x-forwarded-for or forwarded",
        )
        _require(self.log_level in {"debug", "info", "warning", "error"}, "log_level invalid")
        for name in ("uri", "issuer", *(f"audience {a}" for a in self.audiences)):
            value = name.split(" ", 1)[1] if name.startswith("audience ") else getattr(self, name)
            _require(_is_http_url(value), f"{name} must be an absolute http(s) URL: {value!r}")
        _check_message_field(check_authority, self.domain, "domain must be host[:port]")
        if self.statement:
            _check_message_field(check_statement, self.statement, "statement")
        _require(bool(self.chains), "at least one chain must be allowed")
        object.__setattr__(self, "chains", tuple(_canonical_chain(c) for c in self.chains))
        for account in self.policy.accounts:
            chain = canonical_account(account).caip2
            _require(chain in self.chains, f"policy grants {account[:60]} on a chain not allowed")
        for client_id, digest in self.introspection_clients.items():
            _require(
                CLIENT_ID_PATTERN.fullmatch(client_id) is not None,
                f"introspection client id {client_id[:40]!r} must be 1-64 of [A-Za-z0-9._~-]",
            )
            _require(
                isinstance(digest, str) and SHA256_HEX_PATTERN.fullmatch(digest) is not None,
                f"introspection client {client_id!r}: give the SHA-256 lowercase hex of its secret",
            )
        for origin in self.cors_origins:
            canonical_origin(origin)
        object.__setattr__(self, "relying_parties", relying_parties(self.relying_parties))
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigurationError("invalid_setting", f"trusted proxy {proxy!r}") from None
        self._validate_operations()
        self.contract_wallets()  # builds the RPC settings, which checks them
        for chain in self.rpc_urls:
            _require(chain in self.chains, f"rpc_urls names {chain}, which is not in chains")
        self._validate_sessions()

    def _validate_sessions(self) -> None:
        _require(
            300 <= self.session_ttl <= MAX_SESSION_TTL,
            f"session_ttl must be 300..{MAX_SESSION_TTL} seconds (30 days)",
        )
        _require(
            60 <= self.session_idle_ttl <= self.session_ttl,
            "session_idle_ttl must be 60 seconds..session_ttl",
        )

    def _validate_operations(self) -> None:
        _require(1 <= self.header_timeout <= 300, "header_timeout must be 1..300 seconds")
        _require(1024 <= self.max_header_bytes <= 1 << 20, "max_header_bytes must be 1 KiB..1 MiB")
        _require(1 <= self.body_timeout <= 300, "body_timeout must be 1..300 seconds")
        _require(1 <= self.max_connections <= 100_000, "max_connections must be 1..100000")
        _require(0 <= self.metrics_port <= 65535, "metrics_port must be 0 (off) or 1..65535")
        _require(self.metrics_port != self.port, "metrics_port must differ from port")
        _require(
            self.metrics_port == 0 or self.workers == 1,
            "metrics_port serves one process's counters: use it with workers = 1",
        )
        _require(bool(self.metrics_host), "metrics_host must not be empty")

    def contract_wallets(self) -> ContractWalletConfig:
        """The RPC settings, checked: ``https`` (or loopback) URLs of allowed eip155 chains."""
        return ContractWalletConfig(
            rpc_urls=dict(self.rpc_urls),
            timeout=self.rpc_timeout,
            gas_cap=self.rpc_gas_cap,
            factories=frozenset(self.erc6492_factories),
        )

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve settings from flags, environment and the TOML file they name."""
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        from_env = _from_environment(env or {})
        config_path = flags.get("config") or from_env.get("config")
        from_file = _from_toml(Path(config_path)) if config_path else {}
        merged: dict[str, Any] = {**from_file, **from_env, **flags}
        try:
            return cls(**_coerce(merged))
        except TypeError as exc:
            raise ConfigurationError("invalid_setting", str(exc)) from None

    def as_environment(self) -> dict[str, str]:
        """The ``KEYPROOF_*`` variables that reproduce these settings in a worker process."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "policy" or value is None:
                continue
            if f.name == "relying_parties":
                out[ENV_PREFIX + f.name.upper()] = relying_parties_json(value)
                continue
            if f.name in MAPPING_SETTINGS:
                separator = MAPPING_SETTINGS[f.name][0]
                pairs = (f"{k}{separator}{v}" for k, v in value.items())
                out[ENV_PREFIX + f.name.upper()] = ",".join(pairs)
                continue
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            out[ENV_PREFIX + f.name.upper()] = text
        return out

    def public_summary(self) -> dict[str, Any]:
        """Settings worth printing at startup (nothing secret)."""
        return {"issuer": self.issuer, "domain": self.domain, "store": _redact(self.store)}


def _check_message_field(check: Callable[[str], None], value: str, what: str) -> None:
    """Values written into every sign-in message must obey the message grammar."""
    try:
        check(value)
    except KeyproofError as exc:
        raise ConfigurationError("invalid_setting", f"{what}: {exc.description}") from None


def _canonical_chain(entry: str) -> str:
    """A chain of a supported family, written with its canonical reference."""
    try:
        return canonical_chain(entry)
    except KeyproofError as exc:
        problem = "not supported" if exc.code == "unsupported_account" else "invalid"
        raise ConfigurationError("invalid_setting", f"chain {entry[:60]!r} is {problem}") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError("invalid_setting", message)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc) and " " not in value


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)} - {"policy"}
    out: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in known:
                out[name] = value
    return out


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError("invalid_setting", f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError("invalid_setting", f"{path} is not TOML: {exc}") from None
    keyproof = document.pop("keyproof", {})
    policy = document.pop("policy", None)
    if document:
        raise ConfigurationError("invalid_setting", f"unknown sections in {path}: {list(document)}")
    out = dict(keyproof)
    if policy is not None:
        out["policy"] = Policy.from_toml(policy)
    return out


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigurationError("invalid_setting", f"unknown settings: {sorted(unknown)}")
    out = dict(values)
    for name, value in values.items():
        out[name] = _flag(name, value) if name in BOOL_SETTINGS else _coerce_one(name, value)
    return out


def _coerce_one(name: str, value: Any) -> Any:
    if name in LIST_SETTINGS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigurationError("invalid_setting", f"{name} must be a list")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if name in (
        INT_SETTINGS
        | LIMIT_SETTINGS
        | OPERATION_INT_SETTINGS
        | FLOAT_SETTINGS
        | SESSION_INT_SETTINGS
    ):
        return _number(name, value, float if name in FLOAT_SETTINGS else int)
    if name in MAPPING_SETTINGS:
        return _string_table(name, value)
    if name in PATH_SETTINGS:
        return Path(value)
    if name in {"policy", "relying_parties"}:
        return value
    if not isinstance(value, str):
        raise ConfigurationError("invalid_setting", f"{name} must be a string")
    return value


def _flag(name: str, value: Any) -> bool:
    """A TOML boolean, or ``true``/``false`` from a flag or the environment."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise ConfigurationError("invalid_setting", f"{name} must be true or false")


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool):
        raise ConfigurationError("invalid_setting", f"{name} must be {what}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError("invalid_setting", f"{name} must be {what}") from None


def _string_table(name: str, value: Any) -> dict[str, str]:
    """A TOML table, or ``key<sep>value,…`` from the environment (``id:sha256hex``,
    ``eip155:1=https://…``)."""
    separator, spelling, meaning = MAPPING_SETTINGS[name]
    if isinstance(value, str):
        pairs = [item.strip().split(separator, 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigurationError("invalid_setting", f"{name} must be {spelling},...")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError("invalid_setting", f"{name} must map {meaning}")
    return dict(value)
