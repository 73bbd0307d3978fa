"""Logging a browser in and out with a user account or the API token (a signed session cookie)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from callmood.service.audit import audit, audit_login
from callmood.service.deps import (
    clear_session_cookie,
    current_actor,
    login_retry_after,
    record_login_attempt,
    set_session_cookie,
    token_login,
    too_many_logins_message,
    user_login,
)
from callmood.service.schemas import LoginRequest, LoginStatus, UserLoginRequest

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _body_problem(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "body", "loc": ("body",), "msg": message}])


async def login_body(request: Request) -> LoginRequest | UserLoginRequest:
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
    # A user account's login names the user; anything else is the shared token's.
    schema = UserLoginRequest if "username" in data else LoginRequest
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in error.errors()]
        ) from None


@router.post(
    "/login",
    response_model=LoginStatus,
    summary="Log in with a user name and password, or the API token",
    # The body is parsed by `login_body`; its schema is given here for the documentation.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            UserLoginRequest.model_json_schema(),
                            LoginRequest.model_json_schema(),
                        ]
                    }
                }
            },
        }
    },
    responses={
        401: {"description": "Wrong token, wrong user name or password, or a disabled user"},
        429: {"description": "Too many failed logins from this client; see Retry-After"},
    },
)
def login(
    request: Request,
    response: Response,
    body: LoginRequest | UserLoginRequest = Depends(login_body),
) -> LoginStatus:
    """Check the user's password (or the token) and set the session cookie the dashboard
    and the API accept.

    After `login_max_failures` wrong passwords or tokens within `login_window_seconds`, the client
    gets 429 with `Retry-After` (even for the right token) until the window has passed.
    """
    retry_after = login_retry_after(request)
    if retry_after is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=too_many_logins_message(retry_after),
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(body, UserLoginRequest):
        result = user_login(request, body.username, body.password)
    else:
        result = token_login(request, body.token)
    record_login_attempt(request, success=result.actor is not None)
    audit_login(request, result, body.username if isinstance(body, UserLoginRequest) else "")
    if result.subject is None or result.actor is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=result.problem)
    set_session_cookie(response, request, result.subject)
    return LoginStatus(
        authenticated=True,
        auth_disabled=request.app.state.settings.auth_disabled,
        user=result.actor.name,
        role=result.actor.role,
    )


@router.post("/logout", response_model=LoginStatus, summary="Log out")
def logout(request: Request, response: Response) -> LoginStatus:
    actor = current_actor(request)
    if actor is not None:
        audit(request, "logout", actor=actor)
    clear_session_cookie(response)
    return LoginStatus(authenticated=False, auth_disabled=request.app.state.settings.auth_disabled)


@router.get("/status", response_model=LoginStatus, summary="Am I logged in?")
def auth_status(request: Request) -> LoginStatus:
    actor = current_actor(request)
    return LoginStatus(
        authenticated=actor is not None,
        auth_disabled=request.app.state.settings.auth_disabled,
        user=actor.name if actor else None,
        role=actor.role if actor else None,
    )
