"""HTTP in/out for authentication: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from server.access import principal_of
from server.apidoc import api
from server.auth import schemas
from server.auth.service import TokenPair
from server.context import request_context
from server.errors import NotFound
from server.responses import JSONResponse, read_json

_NO_STORE = {"cache-control": "no-store"}
_ACCEPTED = {"status": "accepted"}


def _tokens(pair: TokenPair) -> Response:
    body = {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    }
    return JSONResponse(body, headers=_NO_STORE)


def _accepted(detail: str) -> Response:
    return JSONResponse({**_ACCEPTED, "detail": detail}, status_code=202, headers=_NO_STORE)


@api(
    summary="Create an account",
    description="Enumeration-safe: a new and a taken email get the same answer; the owner of "
    "a taken email is told by email. A verification email is sent.",
    tags=("auth",),
    body=schemas.RegisterBody,
    responses={202: schemas.Accepted},
    errors=(400, 422, 429),
)
async def register(request: Request) -> Response:
    body = await read_json(request, schemas.RegisterBody)
    await request.app.state.container.accounts.register(
        body.email, body.password, body.display_name, request_context(request)
    )
    return _accepted("Check your inbox to confirm your email address.")


@api(
    summary="Log in",
    tags=("auth",),
    body=schemas.LoginBody,
    responses={200: schemas.TokenResponse},
    errors=(400, 401, 422, 429),
)
async def login(request: Request) -> Response:
    body = await read_json(request, schemas.LoginBody)
    auth = request.app.state.container.auth
    return _tokens(await auth.login(body.email, body.password, request_context(request)))


@api(
    summary="Rotate a refresh token",
    description="Returns a new access token and a new refresh token; the old one stops working "
    "(a retry within the grace window gets the same successor).",
    tags=("auth",),
    body=schemas.RefreshBody,
    responses={200: schemas.TokenResponse},
    errors=(400, 401, 422),
)
async def refresh(request: Request) -> Response:
    body = await read_json(request, schemas.RefreshBody)
    auth = request.app.state.container.auth
    return _tokens(await auth.refresh(body.refresh_token, request_context(request)))


@api(summary="End this session", tags=("auth",), responses={204: None})
async def logout(request: Request) -> Response:
    auth = request.app.state.container.auth
    await auth.logout(principal_of(request), request_context(request))
    return Response(status_code=204)


@api(summary="End every session of this account", tags=("auth",), responses={204: None})
async def logout_all(request: Request) -> Response:
    auth = request.app.state.container.auth
    await auth.logout_all(principal_of(request), request_context(request))
    return Response(status_code=204)


@api(
    summary="List this account's live sessions",
    tags=("auth",),
    responses={200: schemas.SessionList},
)
async def list_sessions(request: Request) -> Response:
    principal = principal_of(request)
    sessions = await request.app.state.container.auth.live_sessions(principal)
    data = [
        schemas.SessionView(
            id=str(s.id),
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=min(s.expires_at, s.idle_expires_at),
            user_agent=s.user_agent,
            ip=s.ip,
            current=str(s.id) == principal.session_id,
        )
        for s in sessions
    ]
    return JSONResponse({"data": data})


@api(
    summary="Revoke one of this account's sessions",
    tags=("auth",),
    responses={204: None},
    errors=(404,),
)
async def delete_session(request: Request) -> Response:
    try:
        session_id = uuid.UUID(request.path_params["session_id"])
    except ValueError:
        raise NotFound("No such session.") from None
    auth = request.app.state.container.auth
    await auth.end_session(principal_of(request), session_id, request_context(request))
    return Response(status_code=204)


@api(
    summary="Ask for a password reset link",
    description="The same answer for any email; a known account gets a single-use link.",
    tags=("auth",),
    body=schemas.EmailBody,
    responses={202: schemas.Accepted},
    errors=(400, 422),
)
async def forgot_password(request: Request) -> Response:
    body = await read_json(request, schemas.EmailBody)
    accounts = request.app.state.container.accounts
    await accounts.forgot_password(body.email, request_context(request))
    return _accepted("If the address has an account, a reset link is on its way.")


@api(
    summary="Set a new password with a reset token",
    tags=("auth",),
    body=schemas.ResetBody,
    responses={204: None},
    errors=(400, 422),
)
async def reset_password(request: Request) -> Response:
    body = await read_json(request, schemas.ResetBody)
    accounts = request.app.state.container.accounts
    await accounts.reset_password(body.token, body.password, request_context(request))
    return Response(status_code=204)


@api(
    summary="Change the password",
    description="Needs the current password; ends every other session.",
    tags=("auth",),
    body=schemas.ChangePasswordBody,
    responses={204: None},
    errors=(400, 422),
)
async def change_password(request: Request) -> Response:
    body = await read_json(request, schemas.ChangePasswordBody)
    accounts = request.app.state.container.accounts
    await accounts.change_password(
        principal_of(request), body.current_password, body.new_password, request_context(request)
    )
    return Response(status_code=204)


@api(
    summary="Confirm an email address",
    tags=("auth",),
    body=schemas.TokenBody,
    responses={204: None},
    errors=(400, 422),
)
async def verify_email(request: Request) -> Response:
    body = await read_json(request, schemas.TokenBody)
    accounts = request.app.state.container.accounts
    await accounts.verify_email(body.token, request_context(request))
    return Response(status_code=204)


@api(summary="Send the verification email again", tags=("auth",), responses={202: schemas.Accepted})
async def resend_verification(request: Request) -> Response:
    await request.app.state.container.accounts.resend_verification(principal_of(request))
    return _accepted("If the address is not confirmed yet, a new link is on its way.")


@api(summary="Public keys that verify access tokens", tags=("auth",), responses={200: schemas.Jwks})
async def jwks(request: Request) -> Response:
    document = request.app.state.keyring.jwks()
    return JSONResponse(document, headers={"cache-control": "public, max-age=300"})
