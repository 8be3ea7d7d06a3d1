"""GET /.well-known/jwks.json over HTTP: what another service fetches to verify access tokens."""

from __future__ import annotations

import httpx
import jwt
import pytest

from server.runtime.settings import Settings
from tests.fixtures.identity import Accounts

PUBLIC_JWK_FIELDS = {"kty", "crv", "x", "kid", "alg", "use"}


async def test_another_service_verifies_a_real_access_token_with_the_jwks(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings
) -> None:
    account, tokens = await accounts.create_and_login()

    response = await http.get("/.well-known/jwks.json")  # no credentials: it is public
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "public, max-age=300"
    document = response.json()
    assert document["keys"]
    for jwk in document["keys"]:
        assert set(jwk) == PUBLIC_JWK_FIELDS, "a JWK must carry the public key and nothing else"
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        assert (jwk["alg"], jwk["use"]) == ("EdDSA", "sig")

    header = jwt.get_unverified_header(tokens.access)
    assert (header["alg"], header["typ"]) == ("EdDSA", "at+jwt")
    key = jwt.PyJWKSet.from_dict(document)[header["kid"]]
    assert key.key_id == header["kid"]
    assert key.algorithm_name == "EdDSA"
    claims = jwt.decode(
        tokens.access,
        key,
        algorithms=["EdDSA"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    assert claims["sub"] == str(account.id)

    # The key really is what vouches for the token: a changed payload no longer verifies.
    head, _, signature = tokens.access.split(".")
    forged_body = jwt.utils.base64url_encode(b'{"sub":"1"}').decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            f"{head}.{forged_body}.{signature}",
            key,
            algorithms=["EdDSA"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
