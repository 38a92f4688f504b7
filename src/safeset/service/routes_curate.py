"""The curator, HMA's `/c/...`: banks, signals and content over the shared bank store.

Thin: parses and answers; `curation.Curator` does the work. Scope `curate`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from safeset.service.auth import Caller, require_scope
from safeset.service.curation import Curator
from safeset.service.fetch import fetch_url
from safeset.service.hasher import content_signals
from safeset.signals import registry

router = APIRouter(prefix="/c", tags=["curator"])
curate = require_scope("curate")

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
BankName = Path(
    ...,
    description="Bank name, HMA's rule ^[A-Z_][A-Z0-9_]*$ (lowercase is upper-cased)",
    max_length=128,
    pattern=NAME_PATTERN,
    examples=["MY_BANK"],
)
ContentId = Path(..., description="The content's id: the bank's stable entry id", ge=1, le=2**62)
MAX_TS = 2**62


class BankCreate(BaseModel):
    name: str = Field(..., max_length=128, pattern=NAME_PATTERN, examples=["MY_BANK"])
    enabled_ratio: float | None = Field(None, ge=0.0, le=1.0)
    enabled: bool | None = None


class BankUpdate(BaseModel):
    name: str | None = Field(None, max_length=128, pattern=NAME_PATTERN)
    enabled_ratio: float | None = Field(None, ge=0.0, le=1.0)
    enabled: bool | None = None


class ContentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disable_until_ts: int | None = Field(None, ge=0, le=MAX_TS, description="Unix time until which it does not match")
    enabled: bool | None = Field(None, description="true: enable now; false: disable indefinitely")
    note: str | None = Field(None, max_length=10_000)
    metadata: dict[str, Any] | None = None


def curator(request: Request) -> Curator:
    ctx = request.app.state.ctx
    return ctx.curator


def _ratio(enabled_ratio: float | None, enabled: bool | None) -> float | None:
    if enabled_ratio is not None:
        return enabled_ratio
    if enabled is not None:
        return 1.0 if enabled else 0.0
    return None


@router.get("/banks", summary="List banks")
def banks_index(caller: Caller = Depends(curate), cur: Curator = Depends(curator)) -> list[dict]:
    return cur.list_banks()


@router.post("/banks", status_code=201, summary="Create an empty bank")
def bank_create(body: BankCreate, caller: Caller = Depends(curate), cur: Curator = Depends(curator)) -> dict:
    ratio = _ratio(body.enabled_ratio, body.enabled)
    return cur.create_bank(body.name, 1.0 if ratio is None else ratio, actor=caller.actor)


@router.get("/bank/{bank_name}", summary="Show a bank")
def bank_show(bank_name: str = BankName, caller: Caller = Depends(curate), cur: Curator = Depends(curator)) -> dict:
    return cur.bank(bank_name)


@router.put("/bank/{bank_name}", summary="Change a bank's matching ratio")
def bank_update(
    body: BankUpdate, bank_name: str = BankName, caller: Caller = Depends(curate), cur: Curator = Depends(curator)
) -> dict:
    return cur.update_bank(
        bank_name, new_name=body.name, enabled_ratio=_ratio(body.enabled_ratio, body.enabled), actor=caller.actor
    )


@router.delete("/bank/{bank_name}", summary="Delete a bank and all its versions")
def bank_delete(bank_name: str = BankName, caller: Caller = Depends(curate), cur: Curator = Depends(curator)) -> dict:
    cur.delete_bank(bank_name, actor=caller.actor)
    return {"message": "Done"}


@router.post("/bank/{bank_name}/signal", summary="Add raw signals (hashes) as content")
def bank_add_signals(
    bank_name: str = BankName,
    body: dict[str, Any] = Body(..., examples=[{"pdq": "f" * 64, "note": "optional"}]),
    caller: Caller = Depends(curate),
    cur: Curator = Depends(curator),
) -> dict:
    signals = dict(body)
    note = signals.pop("note", None)
    metadata = signals.pop("metadata", None)
    if note is not None and not isinstance(note, str):
        raise HTTPException(400, "note must be a string")
    return cur.add_signals(bank_name, signals, note=note, metadata=metadata, actor=caller.actor)


CONTENT_UPLOAD = {
    "requestBody": {
        "required": False,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "JSON {content_id, content_uri, json}"},
                        "note": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post("/bank/{bank_name}/content", openapi_extra=CONTENT_UPLOAD, summary="Add content by upload or url=")
async def bank_add_content(
    request: Request,
    bank_name: str = BankName,
    url: str | None = Query(None, description="Fetch the content (only when fetching is enabled)"),
    caller: Caller = Depends(curate),
    cur: Curator = Depends(curator),
) -> dict:
    from safeset.service.routes_hash import uploaded_photo

    config = request.app.state.ctx.config
    name = await run_in_threadpool(cur.require, bank_name)
    note, metadata = None, None
    if url:
        data = await run_in_threadpool(fetch_url, url, config)
    elif request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = await uploaded_photo(request)
        form = await request.form()
        note = _form_text(form.get("note"))
        metadata = _form_json(form.get("metadata"))
    else:
        raise HTTPException(400, "neither url= nor a multipart file upload was received")
    hashed = await run_in_threadpool(content_signals, data, config)
    return await run_in_threadpool(
        lambda: cur.add_signals(name, hashed.signals, note=note, metadata=metadata, actor=caller.actor)
    )


def _form_text(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPException(400, "form field must be text")
    return value


def _form_json(value) -> dict | None:
    text = _form_text(value)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise HTTPException(400, "metadata must be JSON") from None


@router.get("/bank/{bank_name}/content", summary="List a bank's content (its latest version)")
def bank_list_content(
    bank_name: str = BankName,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=2**62),
    caller: Caller = Depends(curate),
    cur: Curator = Depends(curator),
) -> dict:
    return cur.list_content(bank_name, limit=limit, offset=offset)


@router.get("/bank/{bank_name}/content/{content_id}", summary="Show one piece of content")
def bank_show_content(
    bank_name: str = BankName, content_id: int = ContentId, caller: Caller = Depends(curate), cur: Curator = Depends(curator)
) -> dict:
    return cur.content(bank_name, content_id)


@router.put("/bank/{bank_name}/content/{content_id}", summary="Disable content until a time, or set its note")
def bank_update_content(
    body: ContentUpdate,
    bank_name: str = BankName,
    content_id: int = ContentId,
    caller: Caller = Depends(curate),
    cur: Curator = Depends(curator),
) -> dict:
    until = body.disable_until_ts
    if until is None and body.enabled is not None:
        until = 0 if body.enabled else MAX_TS
    return cur.update_content(
        bank_name, content_id, disable_until_ts=until, note=body.note, metadata=body.metadata, actor=caller.actor
    )


@router.delete("/bank/{bank_name}/content/{content_id}", summary="Remove content (a new version without it)")
def bank_delete_content(
    bank_name: str = BankName, content_id: int = ContentId, caller: Caller = Depends(curate), cur: Curator = Depends(curator)
) -> dict:
    return {"deleted": cur.delete_content(bank_name, content_id, actor=caller.actor)}


@router.get("/signal_type", summary="Signal types this service supports")
def signal_types(caller: Caller = Depends(curate)) -> list[dict]:
    return [{"name": kind.name, "enabled_ratio": 1.0, "description": kind.description} for kind in registry.all_types()]
