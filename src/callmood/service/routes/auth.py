"""Logging a browser in and out with the API token (a signed session cookie)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from callmood.service.deps import (
    clear_session_cookie,
    is_authenticated,
    set_session_cookie,
    token_matches,
)
from callmood.service.schemas import LoginRequest, LoginStatus

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login", response_model=LoginStatus, summary="Log in with the API token")
def login(body: LoginRequest, request: Request, response: Response) -> LoginStatus:
    """Check the token and set the session cookie the dashboard and the API accept."""
    if not token_matches(body.token, request.app.state.api_token):
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
