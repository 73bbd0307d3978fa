"""Logging a browser in and out with the API token (a signed session cookie)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from callmood.service.deps import (
    clear_session_cookie,
    is_authenticated,
    login_retry_after,
    record_login_attempt,
    set_session_cookie,
    token_matches,
    too_many_logins_message,
)
from callmood.service.schemas import LoginRequest, LoginStatus

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/login",
    response_model=LoginStatus,
    summary="Log in with the API token",
    responses={
        401: {"description": "Wrong token"},
        429: {"description": "Too many failed logins from this client; see Retry-After"},
    },
)
def login(body: LoginRequest, request: Request, response: Response) -> LoginStatus:
    """Check the token and set the session cookie the dashboard and the API accept.

    After `login_max_failures` wrong tokens within `login_window_seconds`, the client
    gets 429 with `Retry-After` (even for the right token) until the window has passed.
    """
    retry_after = login_retry_after(request)
    if retry_after is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=too_many_logins_message(retry_after),
            headers={"Retry-After": str(retry_after)},
        )
    success = token_matches(body.token, request.app.state.credentials.token_hash)
    record_login_attempt(request, success=success)
    if not success:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong API token")
    set_session_cookie(response, request)
    return LoginStatus(authenticated=True, auth_disabled=request.app.state.settings.auth_disabled)


@router.post("/logout", response_model=LoginStatus, summary="Log out")
def logout(request: Request, response: Response) -> LoginStatus:
    clear_session_cookie(response)
    return LoginStatus(authenticated=False, auth_disabled=request.app.state.settings.auth_disabled)


@router.get("/status", response_model=LoginStatus, summary="Am I logged in?")
def auth_status(request: Request) -> LoginStatus:
    return LoginStatus(
        authenticated=is_authenticated(request),
        auth_disabled=request.app.state.settings.auth_disabled,
    )
