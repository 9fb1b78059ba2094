"""Key files and key variables: ``{"type": "<key type>", "secret": "<encoded key>"}``.

The secret is spelt as each family's tools spell it, one spelling per type:

=============  ===========================================================
``ed25519``    unpadded base64url of the 32-byte seed (as a JWK's ``d``)
``secp256k1``  unpadded base64url of the 32-byte private key
``ethereum``   ``0x`` + 64 hex digits (as eth-account exports it)
``solana``     base58 of seed ‖ public key, 64 bytes (as Solana wallets export it)
=============  ===========================================================

A key file is created with mode 0600 and never overwritten; a file that its group or
others may read, write or run is refused before it is read, as OpenSSH refuses an
unprotected private key. A variable (``KEYPROOF_KEY``) holds the same JSON text.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from keyproof.crypto.encoding import decode_base58_key, decode_hex0x_key, parse_base64url
from keyproof.errors import KeyproofError

from keyproof_client._errors import KeyproofClientError
from keyproof_client._keys import KEY_CLASSES, KEY_TYPES, Key

MAX_KEY_FILE_BYTES: Final = 4096
KEY_VARIABLE: Final = "KEYPROOF_KEY"


def _base64url_32(text: str) -> bytes:
    data = parse_base64url(text, max_length=32)
    if data is None or len(data) != 32:
        raise KeyproofClientError("invalid_key", "secret is not base64url of 32 bytes")
    return data


def _solana_seed(text: str) -> bytes:
    keypair = decode_base58_key(text, length=64)
    key = KEY_CLASSES["solana"](keypair[:32])
    if key.public_key != keypair[32:]:
        raise KeyproofClientError("invalid_key", "the public half does not match the seed")
    return keypair[:32]


_DECODERS: Final[dict[str, Callable[[str], bytes]]] = {
    "ed25519": _base64url_32,
    "secp256k1": _base64url_32,
    "ethereum": lambda text: decode_hex0x_key(text, length=32),
    "solana": _solana_seed,
}


def parse_key(text: str) -> Key:
    """The key a key file's text holds; ``invalid_key`` for anything else."""
    try:
        document = json.loads(text)
    except ValueError:
        raise KeyproofClientError("invalid_key", "not a JSON key document") from None
    if not isinstance(document, dict) or sorted(document) != ["secret", "type"]:
        raise KeyproofClientError("invalid_key", 'expected {"type": ..., "secret": ...}')
    key_type, secret = document["type"], document["secret"]
    if key_type not in KEY_TYPES or not isinstance(secret, str):
        raise KeyproofClientError("invalid_key", f"type must be one of {', '.join(KEY_TYPES)}")
    try:
        return KEY_CLASSES[key_type](_DECODERS[key_type](secret))
    except KeyproofError:
        raise KeyproofClientError("invalid_key", f"not a valid {key_type} secret") from None
    except ValueError:  # coincurve: a secp256k1 secret outside [1, n-1]
        raise KeyproofClientError("invalid_key", f"not a valid {key_type} secret") from None


def key_text(key: Key) -> str:
    """The key file's text for ``key``: holds the secret."""
    return json.dumps({"type": key.type, "secret": key.secret_text()}) + "\n"


def load_key(path: str | os.PathLike[str]) -> Key:
    """Read a key file; refused if its group or others have any access to it."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise KeyproofClientError("invalid_key", f"{path} is not a regular file")
            if mode & 0o077:
                raise KeyproofClientError(
                    "key_file_exposed",
                    f"{path} has mode {stat.S_IMODE(mode):04o}: others may read it; "
                    f"run chmod 600 {path}",
                )
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyproofClientError("key_not_found", f"no key file {path}") from None
    except OSError as failed:
        raise KeyproofClientError(
            "key_not_found", f"cannot read {path}: {failed.strerror}"
        ) from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyproofClientError("invalid_key", f"{path} is larger than a key file")
    return parse_key(data.decode("utf-8", errors="replace"))


def key_from_env(name: str = KEY_VARIABLE) -> Key:
    """The key held by the environment variable ``name`` (the JSON text of a key file)."""
    text = os.environ.get(name)
    if text is None:
        raise KeyproofClientError("key_not_found", f"${name} is not set")
    if len(text) > MAX_KEY_FILE_BYTES:
        raise KeyproofClientError("invalid_key", f"${name} is larger than a key file")
    return parse_key(text)


def save_key(key: Key, path: str | os.PathLike[str]) -> None:
    """Write a new key file with mode 0600; never replaces an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC  # O_EXCL: no symlinks either
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyproofClientError("key_file_exists", f"{path} exists; not overwritten") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(key_text(key))
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            Path(path).unlink()
        raise
