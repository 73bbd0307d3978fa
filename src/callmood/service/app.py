"""The FastAPI application: routers, static files, error mapping, and the worker lifecycle.

`create_app(settings)` builds everything from the settings (database upgraded,
token resolved; job workers and the retention purge started in the lifespan), so tests and
`callmood serve` construct the same app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from callmood import __version__
from callmood.alerts import RulesError
from callmood.analysis import AnalysisError
from callmood.audio import (
    AudioError,
    AudioNotFoundError,
    AudioTooLongError,
    NotAudioError,
)
from callmood.errors import CallmoodError
from callmood.inference import ModelLoadError
from callmood.service.audiosocket import AudioSocketListener
from callmood.service.deps import LOGIN_PATH, require_api_token, resolve_credentials
from callmood.service.events import EventHub, call_stored
from callmood.service.jobs import JobRunner, SharedModel
from callmood.service.ratelimit import LoginRateLimiter
from callmood.service.retention import RetentionTask
from callmood.service.rules_store import RulesStore
from callmood.service.security import (
    SecurityMiddleware,
    policy_with_inline_scripts,
    server_error_response,
)
from callmood.service.webhooks import WebhookDispatcher
from callmood.settings import Settings
from callmood.store import (
    NotFoundError,
    StoreConflictError,
    create_database_engine,
    make_session_factory,
    upgrade_database,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
# Swagger UI's own files (JS, CSS, favicon) from the fastapi-offline package, so /docs
# works on a machine without internet access; served at SWAGGER_ASSETS_URL.
SWAGGER_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
SWAGGER_ASSETS_URL = "/docs-assets"


def error_status(error: CallmoodError) -> int:
    """The HTTP status for a user error: 404 missing, 413 too large, 415 not audio, ..."""
    explicit = getattr(error, "status_code", None)
    if isinstance(explicit, int):
        return explicit
    if isinstance(error, NotFoundError | AudioNotFoundError):
        return 404
    if isinstance(error, StoreConflictError):
        return 409
    if isinstance(error, AudioTooLongError):
        return 413
    if isinstance(error, NotAudioError):
        return 415
    if isinstance(error, AudioError | RulesError | AnalysisError):
        return 422
    if isinstance(error, ModelLoadError):
        return 503
    return 400


async def _callmood_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CallmoodError)
    status_code = error_status(error)
    if status_code >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, error)
    # An upload refused part way (too large, stalled): close rather than drain the body.
    headers = {"Connection": "close"} if getattr(error, "close_connection", False) else None
    return JSONResponse({"detail": str(error)}, status_code=status_code, headers=headers)


async def _data_error_handler(request: Request, error: Exception) -> JSONResponse:
    # A value the database cannot store or compare (PostgreSQL: a NUL character in a
    # search or an id) is the request's fault: a 422 saying so, not a 500.
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    return JSONResponse(
        {"detail": f"a value in the request cannot be stored or searched: {reason}"},
        status_code=422,
    )


async def _validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    # One readable sentence naming each bad input, like every other error of the API,
    # instead of FastAPI's list of error objects.
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        where, *path = [str(part) for part in item.get("loc", ())] or ["request"]
        name = ".".join(path)
        place = (
            f"{where} parameter {name!r}"
            if where in {"query", "path", "header", "cookie"}
            else where
        )
        if where == "body" and name and not name.isdigit():  # ("body", 0): unparsable body
            place = f"body field {name!r}"
        problems.append(f"{place}: {item.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


#: Pages outside the dashboard's router that a signed-out browser is sent to log in for.
DOCUMENTATION_PATHS = ("/docs", "/openapi.json")


def _browser_navigation(request: Request) -> bool:
    # A person's browser opening a page (not a script or the pages' own API calls).
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get(
        "accept", ""
    )


async def _http_error_handler(request: Request, error: Exception) -> Response:
    """A browser gets pages for HTTP errors (404: a page with a way back; /docs signed out:
    the login form, then back); the API and scripts keep the JSON `detail`."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 403 and not request.url.path.startswith("/api"):
        # A page a role may not see (deps.require_role): pages answer as pages.
        from callmood.service.routes.pages import forbidden_page

        return forbidden_page(request, str(error.detail))
    if _browser_navigation(request):
        if error.status_code == 404:
            from callmood.service.routes.pages import not_found_page

            return not_found_page(request)
        if error.status_code == 401 and request.url.path in DOCUMENTATION_PATHS:
            return RedirectResponse(
                f"{LOGIN_PATH}?next={quote(request.url.path, safe='')}", status_code=303
            )
    return await http_exception_handler(request, error)


def _openapi_document(app: FastAPI) -> dict:
    """The OpenAPI document, with 422 bodies described as they are sent: a `detail` string
    (see `_validation_error_handler`), not FastAPI's default list of error objects, and
    the Bearer token as its security scheme."""
    if app.openapi_schema is None:
        document = app.openapi()
        # Swagger UI's Authorize button: its requests then carry the token, which
        # changes need anyway (a login cookie alone needs the pages' CSRF token).
        document.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        document["security"] = [{"bearer": []}]
        schemas = document["components"].get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = {
                "title": "HTTPValidationError",
                "type": "object",
                "properties": {
                    "detail": {
                        "type": "string",
                        "title": "Detail",
                        "description": "Each invalid input named, with what is wrong with it.",
                    }
                },
                "required": ["detail"],
            }
            schemas.pop("ValidationError", None)  # only the replaced schema referred to it
    return app.openapi()


def _add_documentation_routes(app: FastAPI) -> None:
    guarded = [Depends(require_api_token)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi_document() -> JSONResponse:
        return JSONResponse(_openapi_document(app))

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    def interactive_documentation() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="callmood API",
            swagger_js_url=f"{SWAGGER_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS_URL}/favicon.png",
            # No online validator badge: it would send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = policy_with_inline_scripts(page.body)
        return page

    # Public like /static: Swagger UI's code is no secret; the document it shows is guarded.
    app.mount(SWAGGER_ASSETS_URL, StaticFiles(directory=SWAGGER_ASSETS_DIR), name="swagger-assets")


def create_app(
    settings: Settings, *, announce_token: Callable[[str], None] | None = None
) -> FastAPI:
    """Build the service for `settings`.

    The database schema is upgraded and the API token's hash resolved here, before the app
    serves anything; the job workers and the periodic retention purge (when
    `retention_days` and `retention_interval_minutes` are set) run during the lifespan.

    Parameters
    ----------
    settings
        Everything configurable (see :class:`callmood.settings.Settings`).
    announce_token
        Called with a newly created API token (`callmood serve` prints it).

    Raises
    ------
    DatabaseError
        The database cannot be reached or upgraded.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_database_engine(settings.resolved_database_url)
    upgrade_database(engine)
    session_factory = make_session_factory(engine)
    credentials = resolve_credentials(settings, announce_token)
    model = SharedModel(settings.model_dir)
    rules = RulesStore(settings.resolved_rules_path)
    webhooks = WebhookDispatcher(
        settings.webhook_urls,
        secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
    )
    hub = EventHub()  # server push to the dashboard pages (/api/events)
    jobs = JobRunner(
        session_factory=session_factory,
        audio_dir=settings.resolved_audio_dir,
        model=model,
        rules_provider=rules.current,
        webhooks=webhooks,
        workers=settings.workers,
        on_stored=lambda call_id, name, alerts: call_stored(
            hub, call_id=call_id, name=name, alert_count=alerts
        ),
    )

    retention = (
        RetentionTask(
            session_factory,
            settings.resolved_audio_dir,
            retention_days=settings.retention_days,
            interval_seconds=settings.retention_interval_minutes * 60,
            audit_retention_days=settings.audit_retention_days,
        )
        if settings.retention_days is not None and settings.retention_interval_minutes is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The AudioSocket listener (settings.audiosocket) runs in this event loop, beside
        # the routes, so its calls share the model, rules, webhooks and live sessions.
        # First: a port it cannot bind stops the start before anything else runs.
        audiosocket = AudioSocketListener(app) if settings.audiosocket else None
        if audiosocket is not None:
            await audiosocket.start()
        app.state.audiosocket = audiosocket
        jobs.start()
        if retention is not None:
            retention.start()
        try:
            yield
        finally:
            if audiosocket is not None:
                await audiosocket.stop()
            if retention is not None:
                await retention.stop()
            jobs.shutdown()
            webhooks.wait_idle(timeout_seconds=5.0)
            webhooks.close()
            engine.dispose()

    app = FastAPI(
        title="callmood",
        version=__version__,
        description=(
            "Speech-emotion analytics for customer-service calls: upload calls, read "
            "per-speaker emotion timelines and scores, handle alerts, edit alert rules. "
            "Authenticate with `Authorization: Bearer <token>` (or the dashboard login)."
        ),
        lifespan=lifespan,
        # Served below behind the same authentication as the API.
        docs_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.credentials = credentials  # the token's hash and the session key
    app.state.model = model
    app.state.rules = rules
    app.state.webhooks = webhooks
    app.state.jobs = jobs
    app.state.event_hub = hub
    app.state.retention = retention  # None when the server does not purge by itself
    app.state.login_limiter = LoginRateLimiter(
        settings.login_max_failures, settings.login_window_seconds
    )
    app.add_middleware(SecurityMiddleware)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(CallmoodError, _callmood_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(DataError, _data_error_handler)
    app.add_exception_handler(Exception, server_error_response)

    from callmood.service.routes import (
        alerts,
        audiohook,
        audit,
        auth,
        calls,
        events,
        models,
        pages,
        rules,
        stream,
        trends,
        twilio,
    )

    modules = (
        auth,
        calls,
        alerts,
        rules,
        models,
        stream,
        twilio,
        audiohook,
        events,
        trends,
        audit,
        pages,
    )
    for module in modules:
        app.include_router(module.router)
    _add_documentation_routes(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
