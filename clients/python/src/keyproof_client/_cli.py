"""The ``keyproof-client`` command: make a key, show who it is, sign in for a token.

The key comes from ``--key FILE`` or, without it, from ``$KEYPROOF_KEY`` (the key
file's JSON text). A failure is one line on stderr, ``keyproof-client: <code>:
<description>`` with keyproof's code, and exit status 1 (2 for a usage error).

``login`` prints a bearer token, on purpose. What reads it (curl, another tool) cannot
make DPoP proofs, and a DPoP-bound token printed with its private key would put the key
in shell variables, process lists and logs, where a copy of both is worth exactly what a
copied bearer token is. Sender-constrained sessions are ``KeyproofAuth``'s, whose key
never leaves its process; a scope the issuer grants only with DPoP is refused here
(``invalid_dpop_proof``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import httpx

from keyproof_client._errors import KeyproofClientError, printable
from keyproof_client._keyfile import KEY_VARIABLE, key_from_env, load_key, save_key
from keyproof_client._keys import KEY_TYPES, Key, generate_key
from keyproof_client._signin import sign_in

TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyproof-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new key file (mode 0600)")
    keygen.add_argument("--type", required=True, choices=KEY_TYPES, dest="key_type")
    keygen.add_argument("--out", required=True, help="the new key file; never overwritten")
    whoami = commands.add_parser("whoami", help="show the account id and DID of a key")
    login = commands.add_parser("login", help="sign in and print a bearer access token")
    login.add_argument("url", help="the keyproof issuer, e.g. https://auth.example.com")
    login.add_argument(
        "--scope", action="append", default=[], help="a scope to ask for (repeat, or quote)"
    )
    login.add_argument("--audience", help="the token audience, if not the issuer's default")
    login.add_argument("--domain", help="the domain in challenges (default: the URL's host)")
    for command in (whoami, login):
        command.add_argument("--key", help=f"key file (default: ${KEY_VARIABLE} holds the key)")
        command.add_argument("--chain", help="CAIP-2 chain of an Ethereum or Solana account")
        command.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _key(args: argparse.Namespace) -> Key:
    return load_key(args.key) if args.key else key_from_env()


def _identity(key: Key, chain: str | None) -> dict[str, str]:
    return {"type": key.type, "account": key.account(chain), "did": key.did}


def _print_identity(identity: dict[str, str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(identity))
        return
    for name in ("account", "did", "type"):
        print(f"{name:<8} {identity[name]}")


def keygen(args: argparse.Namespace) -> None:
    key = generate_key(args.key_type)
    save_key(key, args.out)
    _print_identity(_identity(key, None), as_json=False)


def whoami(args: argparse.Namespace) -> None:
    _print_identity(_identity(_key(args), args.chain), args.json)


def login(args: argparse.Namespace) -> None:
    scopes = [word for given in args.scope for word in given.split()]
    with httpx.Client(timeout=TIMEOUT) as client:
        token = sign_in(
            args.url,
            _key(args),
            scope=scopes,
            audience=args.audience,
            domain=args.domain,
            chain=args.chain,
            client=client,
        )
    if not args.json:
        print(token.access_token)
        return
    document = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "expires_at": int(token.expires_at),
        "scope": token.scope,
    }
    print(json.dumps(document))


COMMANDS = {"keygen": keygen, "whoami": whoami, "login": login}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except KeyproofClientError as failed:
        print(f"keyproof-client: {failed}", file=sys.stderr)
        return 1
    except httpx.HTTPError as failed:
        why = f"{type(failed).__name__}: {printable(str(failed))}"
        print(f"keyproof-client: issuer_unreachable: {why}", file=sys.stderr)
        return 1
    return 0
