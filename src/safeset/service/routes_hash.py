"""The hasher, HMA's `/h/hash`: content in, `{"pdq": "<hex>", "md5": ..., ...}` out.

GET takes `url=` (fetched only when fetching is enabled and the host is
allowed); POST takes a multipart upload whose field is named after the
content type (`photo=@x.jpg`, as HMA clients send it).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from safeset.service.auth import Caller, require_scope
from safeset.service.fetch import fetch_url
from safeset.service.hasher import PHOTO_FIELDS, content_signals, parse_types
from safeset.service.uploads import read_upload

router = APIRouter(prefix="/h", tags=["hasher"])

_SIGNALS = {
    200: {
        "description": "One key per signal type computed",
        "content": {"application/json": {"example": {"pdq": "f" * 64, "md5": "0" * 32}}},
    }
}
MULTIPART_PHOTO = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"photo": {"type": "string", "format": "binary"}},
                    "required": ["photo"],
                }
            }
        },
    }
}


async def uploaded_photo(request: Request) -> bytes:
    """The one uploaded file of a multipart request (field `photo`), within the byte limit."""
    ctx = request.app.state.ctx
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(400, "send the content as multipart/form-data, e.g. photo=@image.jpg")
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=1 << 20)
    except StarletteHTTPException:  # e.g. the body limit, hit while the form is read
        raise
    except Exception:  # noqa: BLE001 - the multipart parser's errors are the client's malformed body
        raise HTTPException(400, "malformed multipart body (at most one file)") from None
    files = [(name, value) for name, value in form.multi_items() if hasattr(value, "read")]
    if not files:
        raise HTTPException(400, "no file uploaded: send one as multipart field 'photo'")
    field, upload = files[0]
    if field not in PHOTO_FIELDS:
        raise HTTPException(400, f"content type {field!r} is not supported: this service hashes photos (field 'photo')")
    return await read_upload(upload, ctx.config)


@router.get("/hash", responses=_SIGNALS, summary="Hash the content at a URL (when fetching is enabled)")
def hash_url(
    request: Request,
    url: str = Query(..., description="Content to fetch; only from the service's allowed hosts"),
    types: str | None = Query(None, description="Comma-separated signal types (default: all)"),
    caller: Caller = Depends(require_scope("hash")),
) -> dict[str, str]:
    config = request.app.state.ctx.config
    chosen = parse_types(types)
    data = fetch_url(url, config)
    return content_signals(data, config, chosen).signals


@router.post("/hash", responses=_SIGNALS, openapi_extra=MULTIPART_PHOTO, summary="Hash an uploaded photo")
async def hash_upload(
    request: Request,
    types: str | None = Query(None, description="Comma-separated signal types (default: all)"),
    caller: Caller = Depends(require_scope("hash")),
) -> dict[str, str]:
    config = request.app.state.ctx.config
    chosen = parse_types(types)
    data = await uploaded_photo(request)
    result = await run_in_threadpool(content_signals, data, config, chosen)
    return result.signals
