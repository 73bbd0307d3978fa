"""Logging a browser in and out with the API token (a signed session cookie)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

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


def _body_problem(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "body", "loc": ("body",), "msg": message}])


async def login_body(request: Request) -> LoginRequest:
    """The login body, parsed here so every malformed one is a 422 like the rest of the API.

    FastAPI's own parsing answers a deeply nested body (RecursionError) with a bare 400.
    """
    try:
        data = json.loads(await request.body())
    except ValueError as error:  # JSONDecodeError and undecodable bytes
        raise _body_problem(f"not valid JSON ({error})") from None
    except RecursionError:
        raise _body_problem("not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise _body_problem('must be a JSON object like {"token": "..."}')
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in error.errors()]
        ) from None


@router.post(
    "/login",
    response_model=LoginStatus,
    summary="Log in with the API token",
    # The body is parsed by `login_body`; its schema is given here for the documentation.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": LoginRequest.model_json_schema()}},
        }
    },
    responses={
        401: {"description": "Wrong token"},
        429: {"description": "Too many failed logins from this client; see Retry-After"},
    },
)
def login(
    request: Request, response: Response, body: LoginRequest = Depends(login_body)
) -> LoginStatus:
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
