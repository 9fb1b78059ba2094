"""The guard inside FastAPI: the ``Security`` dependency, its OpenAPI scheme, and
``require_scope`` on endpoints whatever their signature.

No ``from __future__ import annotations`` here: FastAPI reads these annotations, which
name dependencies local to the app factories.
"""

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Security
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

from keyproof.guard import KeyproofBackend, KeyproofBearer, KeyproofUser, on_error, require_scope

from conftest import FrozenClock
from test_guard import AUDIENCE, ISSUER, JWKS_URL, SUBJECT, GuardEnv, bearer, guard_env

NO_CREDENTIALS = 'Bearer, DPoP algs="ES256 Ed25519 EdDSA"'


@pytest.fixture
async def env(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[GuardEnv]:
    async with guard_env(tmp_path, clock) as running:
        yield running


def security_app(backend: KeyproofBackend) -> FastAPI:
    """FastAPI's own way: a ``Security`` dependency, no middleware."""
    keyproof = KeyproofBearer(backend)
    app = FastAPI()

    @app.get("/escrows/{escrow_id}")
    async def read(
        escrow_id: int, user: Annotated[KeyproofUser, Security(keyproof, scopes=["escrow:read"])]
    ) -> dict[str, object]:
        return {"escrow": escrow_id, "sub": user.sub}

    @app.post("/escrows/{escrow_id}/release")
    async def release(
        escrow_id: int,
        user: Annotated[KeyproofUser, Security(keyproof, scopes=["escrow:release"])],
    ) -> dict[str, object]:
        return {"released": escrow_id, "by": user.sub}

    return app


def decorated_app(backend: KeyproofBackend) -> FastAPI:
    """Starlette's way inside FastAPI: the middleware and ``require_scope``."""
    app = FastAPI(
        middleware=[Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)]
    )

    @app.get("/decorated/{escrow_id}")
    @require_scope("escrow:release")
    async def decorated(escrow_id: int) -> dict[str, int]:  # takes no request
        return {"escrow": escrow_id}

    @app.get("/decorated-sync")
    @require_scope("escrow:read")
    def decorated_sync(limit: int = 3) -> dict[str, int]:
        return {"limit": limit}

    return app


async def client_of(
    env: GuardEnv, build: Callable[[KeyproofBackend], FastAPI]
) -> httpx.AsyncClient:
    backend = KeyproofBackend(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL, clock=env.clock, http_client=env.issuer
    )
    env.backends.append(backend)
    transport = httpx.ASGITransport(app=build(backend))
    client = httpx.AsyncClient(transport=transport, base_url="http://rs.test")
    return await env.stack.enter_async_context(client)


@pytest.fixture
async def api(env: GuardEnv) -> httpx.AsyncClient:
    return await client_of(env, security_app)


@pytest.fixture
async def decorated(env: GuardEnv) -> httpx.AsyncClient:
    return await client_of(env, decorated_app)


async def test_security_dependency_yields_the_token_holder(env: GuardEnv, api: httpx.AsyncClient):
    response = await api.get("/escrows/7", headers=bearer(env.mint("escrow:read")))
    assert (response.status_code, response.json()) == (200, {"escrow": 7, "sub": SUBJECT})


async def test_security_dependency_refuses_a_missing_scope(env: GuardEnv, api: httpx.AsyncClient):
    response = await api.post("/escrows/7/release", headers=bearer(env.mint("escrow:read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="escrow:release"'
    )
    assert response.json()["detail"]["reason"] == "insufficient_scope"


async def test_security_dependency_without_a_token_is_401_bearer(api: httpx.AsyncClient):
    response = await api.get("/escrows/7")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == NO_CREDENTIALS


async def test_security_dependency_refuses_a_forged_token(env: GuardEnv, api: httpx.AsyncClient):
    response = await api.get("/escrows/7", headers=bearer(env.mint_foreign()))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["detail"]["reason"] == "token_invalid"


async def test_openapi_shows_a_bearer_scheme_with_the_route_scopes(api: httpx.AsyncClient):
    document = (await api.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["keyproof"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    read = document["paths"]["/escrows/{escrow_id}"]["get"]
    assert read["security"] == [{"keyproof": ["escrow:read"]}]
    release = document["paths"]["/escrows/{escrow_id}/release"]["post"]
    assert release["security"] == [{"keyproof": ["escrow:release"]}]


async def test_require_scope_on_an_endpoint_without_a_request(
    env: GuardEnv, decorated: httpx.AsyncClient
):
    allowed = await decorated.get("/decorated/9", headers=bearer(env.mint("escrow:release")))
    assert (allowed.status_code, allowed.json()) == (200, {"escrow": 9})
    refused = await decorated.get("/decorated/9", headers=bearer(env.mint("escrow:read")))
    assert refused.status_code == 403
    assert 'scope="escrow:release"' in refused.headers["www-authenticate"]
    anonymous = await decorated.get("/decorated/9")
    assert (anonymous.status_code, anonymous.headers["www-authenticate"]) == (401, NO_CREDENTIALS)
    synchronous = await decorated.get("/decorated-sync?limit=5", headers=bearer(env.mint()))
    assert (synchronous.status_code, synchronous.json()) == (200, {"limit": 5})


async def test_decorated_endpoint_keeps_its_own_openapi_parameters(decorated: httpx.AsyncClient):
    document = (await decorated.get("/openapi.json")).json()
    parameters = document["paths"]["/decorated/{escrow_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["escrow_id"]
