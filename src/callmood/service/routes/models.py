"""The model the service analyses calls with: name, labels and model card."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from callmood.service.deps import require_api_token
from callmood.service.jobs import describe_model
from callmood.service.schemas import ModelDescription

router = APIRouter(prefix="/api", tags=["model"], dependencies=[Depends(require_api_token)])


@router.get("/model", response_model=ModelDescription, summary="The loaded model and its card")
async def get_model(request: Request) -> ModelDescription:
    # Loading the model on first use takes a moment: keep it off the event loop.
    return await run_in_threadpool(describe_model, request.app.state.model)
