"""The scope policy, end to end: who gets which scope, for how long, and which policy
files are refused at startup.

Every sign-in is a real challenge signed by a real wallet and redeemed through
``Service``; the policy is the only thing that changes between tests.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keyproof.errors import ConfigurationError, InvalidScope
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.server.minting import AccessToken
from keyproof.server.policy import Policy
from keyproof.server.service import Service
from keyproof.stores.memory import MemoryStore
from keyproof.tokens import MAX_TOKEN_LIFETIME

from conftest import START, FrozenClock
from wallets import (
    SOLANA_MAINNET,
    AgentEd25519Wallet,
    AgentSecp256k1Wallet,
    EthWallet,
    SolanaWallet,
)

Wallet = EthWallet | SolanaWallet | AgentEd25519Wallet | AgentSecp256k1Wallet
Build = Callable[..., Service]
CHAINS = ("eip155:1", "eip155:137", f"solana:{SOLANA_MAINNET}", "did:key")
WALLET_KINDS: dict[str, Callable[[], Wallet]] = {
    "eip155": EthWallet.create,
    "solana": SolanaWallet.create,
    "did:key-ed25519": AgentEd25519Wallet.create,
    "did:key-secp256k1": AgentSecp256k1Wallet.create,
}
AGENT_POLICY = Policy(
    scopes=frozenset({"profile:read", "escrow:read", "agent:run", "agent:report", "agents:run"}),
    default=frozenset({"profile:read"}),
    namespaces={"did:key": frozenset({"agent:*"}), "eip155": frozenset({"escrow:read"})},
)
LIFETIME_POLICY = Policy(
    scopes=frozenset({"profile:read", "escrow:read", "escrow:release", "escrow:refund"}),
    default=frozenset({"profile:read", "escrow:read", "escrow:release", "escrow:refund"}),
    lifetimes={"escrow:read": 900, "escrow:release": 300, "escrow:refund": 120},
)


def bare(**fields: object) -> Policy:
    """A policy knowing ``a:b`` and ``agent:run`` and granting nothing unless told."""
    base: dict[str, object] = {"scopes": frozenset({"a:b", "agent:run"}), "default": frozenset()}
    return Policy(**{**base, **fields})  # type: ignore[arg-type]


def account_id(wallet: Wallet, chain: int = 1) -> str:
    if isinstance(wallet, EthWallet):
        return wallet.caip10(chain)
    if isinstance(wallet, SolanaWallet):
        return wallet.caip10()
    return wallet.did


async def sign_in(service: Service, wallet: Wallet, scope: str, chain: int = 1) -> AccessToken:
    issued = await service.challenge(account_id(wallet, chain), scope)
    return await service.redeem(issued.message, wallet.sign(issued.message))


async def refused_code(service: Service, wallet: Wallet, scope: str, chain: int = 1) -> str:
    with pytest.raises(InvalidScope) as refused:
        await service.challenge(account_id(wallet, chain), scope)
    return refused.value.code


@pytest.fixture
async def build(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Build]:
    """Services over one store and key set, each with its own policy and token TTL."""
    store = MemoryStore(clock=clock)
    keys = KeySet([SigningKey.generate(int(clock()))], clock)

    def make(policy: Policy, *, token_ttl: int = 600) -> Service:
        settings = Settings(
            data_dir=tmp_path, store="memory://", chains=CHAINS, policy=policy, token_ttl=token_ttl
        )
        return build_service(settings, store, keys, clock)

    yield make
    await store.close()


# --- per-account grants -----------------------------------------------------------------


@pytest.mark.parametrize("kind", WALLET_KINDS)
async def test_account_grant_reaches_only_the_listed_account(build: Build, kind: str):
    listed, other = WALLET_KINDS[kind](), WALLET_KINDS[kind]()
    policy = Policy(
        scopes=frozenset({"profile:read", "escrow:release"}),
        accounts={account_id(listed): frozenset({"escrow:release"})},
    )
    service = build(policy)
    token = await sign_in(service, listed, "profile:read escrow:release")
    assert token.scope == "escrow:release profile:read"
    assert token.claims["sub"] == account_id(listed)
    assert await refused_code(service, other, "escrow:release") == "scope_not_allowed"
    assert (await sign_in(service, other, "profile:read")).scope == "profile:read"


async def test_account_grant_is_for_one_chain_only(build: Build):
    wallet = EthWallet.create()
    service = build(
        Policy(
            scopes=frozenset({"escrow:release"}),
            default=frozenset(),
            accounts={wallet.caip10(1): frozenset({"escrow:release"})},
        )
    )
    assert (await sign_in(service, wallet, "escrow:release", chain=1)).scope == "escrow:release"
    assert await refused_code(service, wallet, "escrow:release", chain=137) == "scope_not_allowed"


async def test_grant_withdrawn_before_redeem_is_not_granted(build: Build):
    wallet = EthWallet.create()
    scopes = frozenset({"escrow:read", "escrow:release"})
    before = build(
        Policy(
            scopes=scopes,
            default=frozenset({"escrow:read"}),
            accounts={wallet.caip10(): frozenset({"escrow:release"})},
        )
    )
    after = build(Policy(scopes=scopes, default=frozenset({"escrow:read"})))
    issued = await before.challenge(wallet.caip10(), "escrow:read escrow:release")
    token = await after.redeem(issued.message, wallet.sign(issued.message))
    assert token.scope == "escrow:read"


# --- namespace grants and wildcards -----------------------------------------------------


@pytest.mark.parametrize("kind", ["did:key-ed25519", "did:key-secp256k1"])
async def test_agent_namespace_wildcard_grants_agent_scopes(build: Build, kind: str):
    agent = WALLET_KINDS[kind]()
    token = await sign_in(build(AGENT_POLICY), agent, "agent:run agent:report")
    assert token.scope == "agent:report agent:run"


@pytest.mark.parametrize("kind", ["eip155", "solana"])
async def test_wallet_asking_for_agent_scope_is_refused(build: Build, kind: str):
    service = build(AGENT_POLICY)
    wallet = WALLET_KINDS[kind]()
    assert await refused_code(service, wallet, "agent:run") == "scope_not_allowed"
    assert await refused_code(service, wallet, "profile:read agent:report") == "scope_not_allowed"


async def test_namespace_grant_is_only_for_its_namespace(build: Build):
    service = build(AGENT_POLICY)
    assert (await sign_in(service, EthWallet.create(), "escrow:read")).scope == "escrow:read"
    agent = AgentEd25519Wallet.create()
    assert await refused_code(service, agent, "escrow:read") == "scope_not_allowed"


async def test_wildcard_covers_only_its_own_scope_namespace(build: Build):
    agent = AgentEd25519Wallet.create()
    assert await refused_code(build(AGENT_POLICY), agent, "agents:run") == "scope_not_allowed"


async def test_wildcard_grants_only_listed_scopes(build: Build):
    agent = AgentEd25519Wallet.create()
    assert await refused_code(build(AGENT_POLICY), agent, "agent:delete") == "unknown_scope"


# --- exact matching ---------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["Agent:run", "agent:RUN", "AGENT:RUN", "agent:*", "agent:"])
async def test_scopes_match_exactly(build: Build, scope: str):
    agent = AgentEd25519Wallet.create()
    assert await refused_code(build(AGENT_POLICY), agent, scope) == "unknown_scope"


@pytest.mark.parametrize(
    ("fields", "offending"),
    [
        ({"namespaces": {"did:key": frozenset({"Agent:*"})}}, "Agent:*"),
        ({"namespaces": {"did:key": frozenset({"agent:RUN"})}}, "agent:RUN"),
        ({"default": frozenset({"agent:ru*"})}, "agent:ru*"),
        ({"default": frozenset({"*:*"})}, "*:*"),
        ({"namespaces": {"DID:KEY": frozenset({"agent:*"})}}, "DID:KEY"),
        ({"namespaces": {"didkey": frozenset({"agent:*"})}}, "didkey"),
        ({"namespaces": {"EIP155": frozenset({"agent:*"})}}, "EIP155"),
        ({"namespaces": {"eip155:1": frozenset({"agent:*"})}}, "eip155:1"),
        ({"lifetimes": {"Agent:run": 60}}, "Agent:run"),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_policy_spelling_is_exact(fields: dict[str, object], offending: str):
    with pytest.raises(ConfigurationError) as refused:
        bare(**fields)
    assert refused.value.code == "invalid_policy"
    assert repr(offending) in refused.value.description


def test_policy_spelled_exactly_loads():
    policy = bare(
        namespaces={"did:key": frozenset({"agent:*"}), "eip155": frozenset({"a:b"})},
        lifetimes={"agent:run": 60},
    )
    assert policy.grantable(AgentEd25519Wallet.create().did, "did:key") == {"agent:run"}


# --- account ids in the policy must be canonical ----------------------------------------


def canonical_and_variants() -> list[tuple[str, str]]:
    eth = EthWallet.create()
    sol = SolanaWallet.create()
    return [
        (eth.caip10(), f"eip155:1:{eth.address.lower()}"),
        (eth.caip10(), f"eip155:1:0x{eth.address[2:].upper()}"),
        (sol.caip10(), f"solana:mainnet:{sol.address}"),
    ]


@pytest.mark.parametrize(("canonical", "variant"), canonical_and_variants())
def test_policy_account_must_be_canonical(canonical: str, variant: str):
    assert bare(accounts={canonical: frozenset({"a:b"})}).grantable(canonical, "") == {"a:b"}
    with pytest.raises(ConfigurationError) as refused:
        bare(accounts={variant: frozenset({"a:b"})})
    assert refused.value.code == "invalid_policy"
    assert repr(canonical) in refused.value.description


@pytest.mark.parametrize(
    "account",
    [
        "eip155:1:0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96046",  # bad EIP-55 checksum
        "eip155:1:0x1234",
        "eip155:one:0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
        "solana:devnet-ish:11111111111111111111111111111111",
        "cosmos:cosmoshub-4:cosmos1abc",
        "did:key:z6MkNotAKey",
        "did:web:example.com",
        "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
        "",
    ],
)
def test_policy_account_must_be_an_account_id(account: str):
    with pytest.raises(ConfigurationError) as refused:
        bare(accounts={account: frozenset({"a:b"})})
    assert refused.value.code == "invalid_policy"
    assert repr(account) in refused.value.description


def test_policy_account_on_any_chain_of_a_shipped_family_is_accepted():
    wallet = EthWallet.create()
    agent = AgentSecp256k1Wallet.create()
    ids = [wallet.caip10(8453), wallet.caip10(137), agent.did, AgentEd25519Wallet.create().did]
    policy = bare(accounts={i: frozenset({"a:b"}) for i in ids})
    assert all(policy.grantable(i, "") == {"a:b"} for i in ids)


# --- lifetimes --------------------------------------------------------------------------

LIFETIME_SCOPES = sorted(LIFETIME_POLICY.scopes)
SCOPE_SETS = [
    subset
    for size in range(len(LIFETIME_SCOPES) + 1)
    for subset in itertools.combinations(LIFETIME_SCOPES, size)
]


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=lambda s: " ".join(s) or "none")
async def test_token_lives_for_its_shortest_scope(build: Build, scopes: tuple[str, ...]):
    expected = min([600, *(LIFETIME_POLICY.lifetimes.get(s, 600) for s in scopes)])
    token = await sign_in(build(LIFETIME_POLICY), EthWallet.create(), " ".join(scopes))
    assert token.scope == " ".join(scopes)
    assert token.expires_in == expected
    assert token.claims["exp"] == START + expected


async def test_adding_a_scope_never_lengthens_a_token(build: Build):
    service = build(LIFETIME_POLICY)
    lifetimes = {}
    for scopes in SCOPE_SETS:
        token = await sign_in(service, EthWallet.create(), " ".join(scopes))
        lifetimes[frozenset(scopes)] = token.expires_in
    for smaller, larger in itertools.product(lifetimes, repeat=2):
        if smaller <= larger:
            assert lifetimes[larger] <= lifetimes[smaller]


async def test_scope_lifetime_never_exceeds_token_ttl(build: Build):
    token = await sign_in(build(LIFETIME_POLICY, token_ttl=60), EthWallet.create(), "escrow:read")
    assert token.expires_in == 60
    longer = await sign_in(
        build(LIFETIME_POLICY, token_ttl=3600), EthWallet.create(), "escrow:read"
    )
    assert longer.expires_in == 900


async def test_lifetime_of_an_ungranted_scope_does_not_apply(build: Build):
    wallet = EthWallet.create()
    scopes = frozenset({"escrow:read", "escrow:release"})
    before = build(Policy(scopes=scopes, default=scopes, lifetimes={"escrow:release": 30}))
    after = build(
        Policy(scopes=scopes, default=frozenset({"escrow:read"}), lifetimes={"escrow:release": 30})
    )
    issued = await before.challenge(wallet.caip10(), "escrow:read escrow:release")
    token = await after.redeem(issued.message, wallet.sign(issued.message))
    assert (token.scope, token.expires_in) == ("escrow:read", 600)


async def test_hard_cap_holds_at_its_limit(build: Build):
    policy = bare(default=frozenset({"a:b"}), lifetimes={"a:b": 3600})
    token = await sign_in(build(policy, token_ttl=MAX_TOKEN_LIFETIME), EthWallet.create(), "a:b")
    assert token.expires_in == MAX_TOKEN_LIFETIME == 3600


@pytest.mark.parametrize("seconds", [MAX_TOKEN_LIFETIME + 1, 86_400, 0, -1])
def test_lifetime_outside_the_cap_fails_at_startup(seconds: int):
    with pytest.raises(ConfigurationError) as refused:
        bare(lifetimes={"a:b": seconds})
    assert refused.value.code == "invalid_policy"
    assert "out of range" in refused.value.description


def test_token_ttl_above_the_cap_fails_at_startup(tmp_path: Path):
    with pytest.raises(ConfigurationError) as refused:
        Settings(data_dir=tmp_path, store="memory://", token_ttl=MAX_TOKEN_LIFETIME + 1)
    assert refused.value.code == "invalid_setting"


# --- loading the [policy] table ---------------------------------------------------------


def load(tmp_path: Path, policy_toml: str) -> Settings:
    config = tmp_path / "keyproof.toml"
    config.write_text('[keyproof]\nstore = "memory://"\n\n[policy]\n' + policy_toml)
    return Settings.load({"config": str(config), "data_dir": str(tmp_path)}, {})


GOOD_TABLE = """\
scopes = ["profile:read", "escrow:read", "escrow:release", "agent:run"]
default = ["profile:read"]
[policy.namespaces]
"did:key" = ["agent:*"]
"eip155" = ["escrow:read"]
[policy.accounts]
"{account}" = ["escrow:release"]
[policy.lifetimes]
"escrow:release" = 300
"""


async def test_policy_from_toml_drives_sign_in(tmp_path: Path, clock: FrozenClock):
    wallet, agent = EthWallet.create(), AgentEd25519Wallet.create()
    settings = load(tmp_path, GOOD_TABLE.format(account=wallet.caip10()))
    store = MemoryStore(clock=clock)
    service = build_service(
        settings, store, KeySet([SigningKey.generate(int(clock()))], clock), clock
    )
    try:
        token = await sign_in(service, wallet, "escrow:read escrow:release")
        assert (token.scope, token.expires_in) == ("escrow:read escrow:release", 300)
        assert (await sign_in(service, agent, "agent:run")).scope == "agent:run"
        assert await refused_code(service, wallet, "agent:run") == "scope_not_allowed"
        assert await refused_code(service, EthWallet.create(), "escrow:release") == (
            "scope_not_allowed"
        )
    finally:
        await store.close()


KNOWN_ACCOUNT = "eip155:1:0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
BAD_TABLES = {
    "unknown key": ('scopes = ["a:b"]\ndefaults = ["a:b"]\n', "'defaults'"),
    "unknown subtable": ('scopes = ["a:b"]\n[policy.lifetime]\n"a:b" = 60\n', "'lifetime'"),
    "scopes not a list": ('scopes = "a:b"\n', "policy.scopes must be"),
    "scope not a string": ("scopes = [1]\n", "policy.scopes must be"),
    "default not a list": ('scopes = ["a:b"]\ndefault = "a:b"\n', "policy.default must be"),
    "wildcard in scopes": ('scopes = ["a:*"]\n', "exact scopes only"),
    "grant of unknown scope": ('scopes = ["a:b"]\ndefault = ["a:c"]\n', "unknown scope 'a:c'"),
    "namespaces not a table": (
        'scopes = ["a:b"]\nnamespaces = ["eip155"]\n',
        "policy.namespaces must be a table",
    ),
    "namespace grant not a list": (
        'scopes = ["a:b"]\n[policy.namespaces]\neip155 = "a:b"\n',
        "policy.namespaces.eip155 must be",
    ),
    "namespace typo": ('scopes = ["a:b"]\n[policy.namespaces]\ndidkey = ["a:*"]\n', "'didkey'"),
    "namespace case": ('scopes = ["a:b"]\n[policy.namespaces]\nEIP155 = ["a:b"]\n', "'EIP155'"),
    "accounts not a table": (
        'scopes = ["a:b"]\naccounts = "x"\n',
        "policy.accounts must be a table",
    ),
    "account not an id": ('scopes = ["a:b"]\n[policy.accounts]\nalice = ["a:b"]\n', "'alice'"),
    "account lowercase": (
        f'scopes = ["a:b"]\n[policy.accounts]\n"{KNOWN_ACCOUNT.lower()}" = ["a:b"]\n',
        "canonical form",
    ),
    "account grant not a list": (
        f'scopes = ["a:b"]\n[policy.accounts]\n"{KNOWN_ACCOUNT}" = "a:b"\n',
        "must be a list of scopes",
    ),
    "lifetime as string": (
        'scopes = ["a:b"]\n[policy.lifetimes]\n"a:b" = "60"\n',
        "policy.lifetimes maps",
    ),
    "lifetime as float": (
        'scopes = ["a:b"]\n[policy.lifetimes]\n"a:b" = 60.0\n',
        "policy.lifetimes maps",
    ),
    "lifetime as bool": (
        'scopes = ["a:b"]\n[policy.lifetimes]\n"a:b" = true\n',
        "policy.lifetimes maps",
    ),
    "lifetime over cap": ('scopes = ["a:b"]\n[policy.lifetimes]\n"a:b" = 3601\n', "out of range"),
    "lifetime of unknown scope": (
        'scopes = ["a:b"]\n[policy.lifetimes]\n"a:c" = 60\n',
        "unknown scope 'a:c'",
    ),
    "lifetimes not a table": ('scopes = ["a:b"]\nlifetimes = 60\n', "policy.lifetimes maps"),
}


@pytest.mark.parametrize(("table", "reason"), BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_bad_policy_table_fails_at_startup(tmp_path: Path, table: str, reason: str):
    with pytest.raises(ConfigurationError) as refused:
        load(tmp_path, table)
    assert refused.value.code == "invalid_policy"
    assert reason in refused.value.description


def test_lowercase_account_error_names_the_canonical_form(tmp_path: Path):
    with pytest.raises(ConfigurationError) as refused:
        load(tmp_path, BAD_TABLES["account lowercase"][0])
    assert repr(KNOWN_ACCOUNT) in refused.value.description
