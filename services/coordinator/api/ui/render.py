"""The UI's templates (Jinja2, autoescaped) and the filters they use."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from . import views

_ENV = Environment(
    loader=PackageLoader("services.coordinator.api.ui", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(age=views.age, num=views.num, signed=views.signed, short_key=views.short_key)
_ENV.globals.update(FINISHED=views.FINISHED, STATUSES=views.STATUSES)


#: Scripts only from the coordinator itself (htmx and ui.js, no inline script); framed only by its own pages
#: (the run page frames the report); forms post only to it. Styles may be inline (the charts' SVG, htmx's).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def render(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    page = _ENV.get_template(template).render(
        path=request.url.path, fragment=bool(request.headers.get("hx-request")), **context
    )
    return HTMLResponse(page, status_code=code, headers=SECURITY_HEADERS)
