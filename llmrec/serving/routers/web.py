"""``GET /``: the web chat page (a static file that talks to ``/v1/chat/completions``)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    html = resources.files("llmrec.serving").joinpath("static/index.html").read_text()
    return HTMLResponse(html)
