"""The FastAPI application: routers, static files, error mapping, and the worker lifecycle.

`create_app(settings)` builds everything from the settings (database upgraded,
token resolved, webhooks and job workers started in the lifespan), so tests and
`callmood serve` construct the same app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

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
from callmood.service.deps import require_api_token, resolve_api_token
from callmood.service.jobs import JobRunner, SharedModel
from callmood.service.rules_store import RulesStore
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
    return JSONResponse({"detail": str(error)}, status_code=status_code)


def _add_documentation_routes(app: FastAPI) -> None:
    guarded = [Depends(require_api_token)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    def interactive_documentation() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="callmood API")


def create_app(
    settings: Settings, *, announce_token: Callable[[str], None] | None = None
) -> FastAPI:
    """Build the service for `settings`.

    The database schema is upgraded and the API token resolved here, before the app
    serves anything; the webhook sender and the job workers start with the lifespan.

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
    api_token = resolve_api_token(settings, announce_token)
    model = SharedModel(settings.model_dir, workers=settings.workers)
    rules = RulesStore(settings.resolved_rules_path)
    webhooks = WebhookDispatcher(
        settings.webhook_urls,
        secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
    )
    jobs = JobRunner(
        session_factory=session_factory,
        audio_dir=settings.resolved_audio_dir,
        model=model,
        rules_provider=rules.current,
        webhooks=webhooks,
        workers=settings.workers,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        try:
            yield
        finally:
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
    app.state.api_token = api_token
    app.state.model = model
    app.state.rules = rules
    app.state.webhooks = webhooks
    app.state.jobs = jobs
    app.add_exception_handler(CallmoodError, _callmood_error_handler)

    from callmood.service.routes import alerts, auth, calls, models, pages, rules, stream

    for module in (auth, calls, alerts, rules, models, stream, pages):
        app.include_router(module.router)
    _add_documentation_routes(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
