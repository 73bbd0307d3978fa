"""The alert rules: read them, replace them (validated; an invalid set is refused with 422)."""

from __future__ import annotations

import json
from typing import Literal

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response

from callmood.alerts import RulesError, RuleSet
from callmood.service.deps import require_api_token
from callmood.service.rules_store import to_yaml

router = APIRouter(prefix="/api/rules", tags=["rules"], dependencies=[Depends(require_api_token)])

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


@router.put(
    "",
    response_model=RuleSet,
    summary="Replace the alert rules",
    openapi_extra=_PUT_OPENAPI,
    responses={422: {"description": "The rules are invalid; `detail` says which and why"}},
)
async def put_rules(request: Request) -> RuleSet:
    """Replace every rule with the JSON (or YAML) document sent; the next call uses them."""
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        data = yaml.safe_load(body) if media_type in YAML_MEDIA_TYPES else json.loads(body)
    except (ValueError, OverflowError, yaml.YAMLError) as error:
        # OverflowError: PyYAML calls chr() on an escape such as "\\U8010A5A8".
        raise RulesError(f"rules document: cannot parse the body ({error})") from None
    except RecursionError:
        raise RulesError("rules document: cannot parse the body (nested too deeply)") from None
    rules = RuleSet.from_dict(data, source="rules document")
    return request.app.state.rules.replace(rules)
