"""Sign in to keyproof with a local key: an ``httpx.Auth`` for agents that keeps a
DPoP-bound session (RFC 9449), key files, a CLI.

::

    auth = KeyproofAuth("https://auth.example.com", load_key("agent.key"), scope="agent:run")
    with httpx.Client(auth=auth) as api:
        api.get("https://api.example.com/jobs")

The protocol is in keyproof's specs/protocol.md; message parsing, did:key and the
signature encodings are keyproof's own (``pip install keyproof``), never the issuer's.
"""

from keyproof_client._auth import KeyproofAuth
from keyproof_client._errors import KeyproofClientError
from keyproof_client._keyfile import key_from_env, load_key, parse_key, save_key
from keyproof_client._keys import KEY_TYPES, Key, KeyType, generate_key
from keyproof_client._signin import AccessToken, sign_in

__all__ = [
    "KEY_TYPES",
    "AccessToken",
    "Key",
    "KeyType",
    "KeyproofAuth",
    "KeyproofClientError",
    "__version__",
    "generate_key",
    "key_from_env",
    "load_key",
    "parse_key",
    "save_key",
    "sign_in",
]

__version__ = "0.1.0"
