"""The export page (admins): make a hotline export of confirmed items and download it.

Each export is `safeset.review.export.export_confirmed` written to its own
directory `<store>/exports/<UTC time>-<random>/` (confirmed.json and
confirmed.csv, no image bytes), so earlier exports stay as they were sent.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from safeset.review.export import CSV_NAME, JSON_NAME, export_confirmed
from safeset.webui.auth import page_session, require_csrf, require_role, webui_of
from safeset.webui.pages import UIRoute, render
from safeset.webui.review_pages import _queue, reviewer_name
from safeset.webui.sessions import Session

router = APIRouter(route_class=UIRoute)

EXPORTS_DIR = "exports"
FILES = {JSON_NAME: "application/json", CSV_NAME: "text/csv; charset=utf-8"}
_EXPORT_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
SHOWN_EXPORTS = 50


def exports_root(request: Request) -> Path:
    return webui_of(request).ctx.config.store_root / EXPORTS_DIR


def _listing(root: Path) -> list[dict]:
    if not root.is_dir():
        return []
    found = []
    for directory in sorted((p for p in root.iterdir() if p.is_dir() and _EXPORT_NAME.match(p.name)), reverse=True):
        files = [name for name in FILES if (directory / name).is_file()]
        if not files:
            continue
        items = None
        try:
            items = int(json.loads((directory / JSON_NAME).read_text(encoding="utf-8"))["count"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        found.append({"name": directory.name, "files": files, "items": items})
        if len(found) >= SHOWN_EXPORTS:
            break
    return found


@router.get("/export")
def export_page(request: Request, session: Session = Depends(page_session)) -> Response:
    require_role(session, "admin")
    created = request.query_params.get("created")
    message = f"Export {created} is ready." if created and _EXPORT_NAME.match(created) else None
    return render(request, "export.html", active="export", exports=_listing(exports_root(request)), message=message)


@router.post("/export")
def create_export(request: Request, csrf_token: str = Form(""), session: Session = Depends(page_session)) -> Response:
    require_csrf(session, csrf_token)
    require_role(session, "admin")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{secrets.token_hex(4)}"
    export_confirmed(_queue(webui_of(request)), exports_root(request) / name, actor=reviewer_name(session))
    return RedirectResponse(f"/ui/export?created={name}", status_code=303)


@router.get("/export/{name}/{file_name}")
def download(request: Request, name: str, file_name: str, session: Session = Depends(page_session)) -> Response:
    require_role(session, "admin")
    if not _EXPORT_NAME.match(name) or file_name not in FILES:
        raise HTTPException(404, "No such export file.")
    path = exports_root(request) / name / file_name
    if not path.is_file():
        raise HTTPException(404, "No such export file.")
    return FileResponse(path, media_type=FILES[file_name], filename=f"safeset-{name}-{file_name}")
