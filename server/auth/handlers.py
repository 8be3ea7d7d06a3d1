"""HTTP in/out for authentication: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from server.auth import schemas
from server.auth.cookies import CSRF_HEADER, DEVICE_COOKIE, REFRESH_COOKIE, SessionCookies
from server.auth.service import InvalidRefreshToken, TokenPair
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.context import request_context
from server.web.errors import CsrfFailed, NotFound, ValidationFailed
from server.web.responses import JSONResponse, read_json
from server.web.state import container

_NO_STORE = {"cache-control": "no-store"}
_ACCEPTED = {"status": "accepted"}


def _tokens(pair: TokenPair, cookies: SessionCookies | None = None) -> Response:
    """The token answer: the refresh token in the body, or (cookie mode) in its cookie with
    a fresh CSRF token in the body and the CSRF cookie."""
    body = {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
    }
    if cookies is None:
        body["refresh_token"] = pair.refresh_token
        if pair.device_token is not None:
            body["device_token"] = pair.device_token
        return JSONResponse(body, headers=_NO_STORE)
    csrf = cookies.new_csrf_token()
    response = JSONResponse({**body, "csrf_token": csrf}, headers=_NO_STORE)
    cookies.attach(response, pair.refresh_token, csrf)
    if pair.device_token is not None:
        cookies.attach_device(response, pair.device_token)
    return response


def _session_cookies(request: Request) -> SessionCookies | None:
    cookies: SessionCookies | None = request.app.state.session_cookies
    return cookies


def _ended(request: Request) -> Response:
    """204 for a logout; it clears the session cookies when the request carried them."""
    response = Response(status_code=204)
    cookies = _session_cookies(request)
    if cookies is not None and cookies.present(request):
        cookies.clear(response)
    return response


def _accepted(detail: str) -> Response:
    return JSONResponse({**_ACCEPTED, "detail": detail}, status_code=202, headers=_NO_STORE)


@api(
    summary="Create an account",
    description="Enumeration-safe: a new and a taken email get the same answer; the owner of "
    "a taken email is told by email. A verification email is sent, and the account cannot "
    "log in until it is confirmed. Registering the address of an account that was never "
    "confirmed mails that address a password-reset token instead: setting the password takes "
    "the account and confirms it.",
    tags=("auth",),
    body=schemas.RegisterBody,
    responses={202: schemas.Accepted},
    errors=(400, 422, 429),
)
async def register(request: Request) -> Response:
    body = await read_json(request, schemas.RegisterBody)
    await container(request).accounts.register(
        body.email, body.password, body.display_name, request_context(request)
    )
    return _accepted("Check your inbox to confirm your email address.")


@api(
    summary="Log in",
    description="The answer's `device_token` makes this client a known device: sent with its "
    "next login, failed logins by others (which block the account for a while) do not hold it "
    "up. With `cookie: true` (cookie mode, `HOTPATH_AUTH_COOKIES`) the refresh token is "
    f"set as the HttpOnly cookie `{REFRESH_COOKIE}` instead of returned, the device token as "
    f"`{DEVICE_COOKIE}`, and the answer carries a `csrf_token` to send back in the "
    "`X-CSRF-Token` header when refreshing. The right password of an account whose email is "
    "not confirmed yet is a 403 `email-not-confirmed`.",
    tags=("auth",),
    body=schemas.LoginBody,
    responses={200: schemas.TokenResponse},
    errors=(400, 401, 403, 422, 429),
)
async def login(request: Request) -> Response:
    body = await read_json(request, schemas.LoginBody)
    cookies = _session_cookies(request)
    if body.cookie and cookies is None:
        raise ValidationFailed(
            "Cookie mode is off on this server.",
            errors=[{"pointer": "/cookie", "detail": "cookie mode is not enabled"}],
        )
    device = body.device_token
    if device is None and cookies is not None:
        device = cookies.device_token(request)
    auth = container(request).auth
    pair = await auth.login(body.email, body.password, request_context(request), device)
    return _tokens(pair, cookies if body.cookie else None)


@api(
    summary="Rotate a refresh token",
    description="Returns a new access token and a new refresh token; the old one stops working "
    "(a retry within the grace window gets the same successor). In cookie mode, send no "
    f"`refresh_token` (an empty body will do): the `{REFRESH_COOKIE}` cookie carries it, the "
    f"`{CSRF_HEADER}` header must repeat the CSRF token and `Sec-Fetch-Site` must be "
    "same-origin or same-site (403 otherwise); the new refresh token comes back as the cookie.",
    tags=("auth",),
    body=schemas.RefreshBody,
    body_required=False,
    responses={200: schemas.TokenResponse},
    errors=(400, 401, 403, 422),
)
async def refresh(request: Request) -> Response:
    if await request.body():
        body = await read_json(request, schemas.RefreshBody)
    else:
        body = schemas.RefreshBody()
    auth = container(request).auth
    if body.refresh_token is not None:
        return _tokens(await auth.refresh(body.refresh_token, request_context(request)))
    cookies = _session_cookies(request)
    if cookies is None:
        raise ValidationFailed(
            "The refresh token is missing.",
            errors=[{"pointer": "/refresh_token", "detail": "required"}],
        )
    token = cookies.refresh_token(request)
    if token is None:
        raise InvalidRefreshToken("No refresh token: log in again.")
    if not request.scope.get("csrf_checked"):
        # The CSRF layer skips requests that carry credentials of their own (a bearer token):
        # the session cookie is used only by a request it vetted.
        raise CsrfFailed("A refresh from the session cookie takes no other credentials.")
    return _tokens(await auth.refresh(token, request_context(request)), cookies)


@api(summary="End this session", tags=("auth",), responses={204: None})
async def logout(request: Request) -> Response:
    auth = container(request).auth
    await auth.logout(principal_of(request), request_context(request))
    return _ended(request)


@api(summary="End every session of this account", tags=("auth",), responses={204: None})
async def logout_all(request: Request) -> Response:
    auth = container(request).auth
    await auth.logout_all(principal_of(request), request_context(request))
    return _ended(request)


@api(
    summary="List this account's live sessions",
    tags=("auth",),
    responses={200: schemas.SessionList},
)
async def list_sessions(request: Request) -> Response:
    principal = principal_of(request)
    sessions = await container(request).auth.live_sessions(principal)
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
    auth = container(request).auth
    await auth.end_session(principal_of(request), session_id, request_context(request))
    return Response(status_code=204)


@api(
    summary="Ask for a password reset link",
    description="The same answer for any email; a known account gets a single-use link. "
    "Setting the password with it also confirms the email (and so activates an account "
    "never confirmed).",
    tags=("auth",),
    body=schemas.EmailBody,
    responses={202: schemas.Accepted},
    errors=(400, 422),
)
async def forgot_password(request: Request) -> Response:
    body = await read_json(request, schemas.EmailBody)
    accounts = container(request).accounts
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
    accounts = container(request).accounts
    await accounts.reset_password(body.token, body.password, request_context(request))
    return Response(status_code=204)


@api(
    summary="Change the password",
    description="Needs the current password; ends every other session. Wrong current "
    "passwords count on the account's login backoff (429 + Retry-After while blocked).",
    tags=("auth",),
    body=schemas.ChangePasswordBody,
    responses={204: None},
    errors=(400, 422, 429),
)
async def change_password(request: Request) -> Response:
    body = await read_json(request, schemas.ChangePasswordBody)
    accounts = container(request).accounts
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
    accounts = container(request).accounts
    await accounts.verify_email(body.token, request_context(request))
    return Response(status_code=204)


@api(summary="Send the verification email again", tags=("auth",), responses={202: schemas.Accepted})
async def resend_verification(request: Request) -> Response:
    await container(request).accounts.resend_verification(principal_of(request))
    return _accepted("If the address is not confirmed yet, a new link is on its way.")


@api(summary="Public keys that verify access tokens", tags=("auth",), responses={200: schemas.Jwks})
async def jwks(request: Request) -> Response:
    document = request.app.state.keyring.jwks()
    return JSONResponse(document, headers={"cache-control": "public, max-age=300"})
