"""The alert rules: read them, replace them (validated; an invalid set is refused with 422)."""

from __future__ import annotations

import json
from typing import Literal

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from callmood.alerts import RulesError, RuleSet
from callmood.safe_yaml import load_yaml
from callmood.service.audit import audit
from callmood.service.deps import require_api_token, require_role, require_scope
from callmood.service.rules_store import to_yaml

router = APIRouter(prefix="/api/rules", tags=["rules"], dependencies=[Depends(require_api_token)])

#: The largest rules document accepted (a real one is a few KiB); checked before parsing.
MAX_RULES_BYTES = 256 * 1024
YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")

_PUT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RuleSet.model_json_schema()},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "",
    response_model=RuleSet,
    summary="The alert rules in force",
    responses={200: {"content": {"application/yaml": {}}}},
)
def get_rules(
    request: Request, format: Literal["json", "yaml"] = Query("json", description="Body format.")
) -> RuleSet | Response:
    rules = request.app.state.rules.current()
    if format == "yaml":
        return Response(to_yaml(rules), media_type="application/yaml")
    return rules


def _too_large(size: str) -> HTTPException:
    return HTTPException(
        413,
        detail=f"rules document of {size}: larger than the limit of {MAX_RULES_BYTES} bytes",
    )


async def _read_limited_body(request: Request) -> bytes:
    # Refused by its declared length, or else while streaming, so an oversized body is
    # neither held in memory whole nor handed to the YAML parser.
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_RULES_BYTES:
        raise _too_large(f"{int(declared)} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_RULES_BYTES:
            raise _too_large(f"more than {MAX_RULES_BYTES} bytes")
    return bytes(body)


@router.put(
    "",
    dependencies=[Depends(require_role("admin")), Depends(require_scope("rules:write"))],
    response_model=RuleSet,
    summary="Replace the alert rules",
    openapi_extra=_PUT_OPENAPI,
    responses={
        413: {"description": "The document is larger than 256 KiB"},
        422: {"description": "The rules are invalid; `detail` says which and why"},
    },
)
async def put_rules(request: Request) -> RuleSet:
    """Replace every rule with the JSON (or YAML) document sent; the next call uses them."""
    body = await _read_limited_body(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        data = load_yaml(body) if media_type in YAML_MEDIA_TYPES else json.loads(body)
    except (ValueError, yaml.YAMLError) as error:
        raise RulesError(f"rules document: cannot parse the body ({error})") from None
    except RecursionError:  # thousands of nested [ or { in JSON: the parser recurses per level
        raise RulesError("rules document: cannot parse the body (nested too deeply)") from None
    rules = RuleSet.from_dict(data, source="rules document")
    # Refused now rather than failing every call analysed with them later.
    model = await run_in_threadpool(request.app.state.model.get)
    rules.check_labels(model.labels)
    saved = request.app.state.rules.replace(rules)
    names = [rule.name for rule in saved.rules]
    await run_in_threadpool(audit, request, "rules.changed", "rules", {"rules": names})
    return saved
