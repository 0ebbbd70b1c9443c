"""Who may see the UI: with a coordinator token set, a request needs either the bearer header (as `/v1`) or a
session that signed in through the login form here (the cookie: ../session.py). Forms that change something
also carry the session's CSRF token. Without a token the UI is open, like the API (loopback only)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..session import AUTH, proof, signed_in
from .render import render

router = APIRouter(prefix="/ui", include_in_schema=False)

CSRF = "csrf"
WRONG_TOKEN = "That is not the coordinator's token (SEAL_AUTH_TOKEN)."
BAD_FORM = "This form has expired (or came from another site): reload the page and try again."


class SignInNeeded(Exception):
    """Raised by `viewer` for a request without the token; answered with the login page (or 401)."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in")
        self.next_url = next_url


class FormRefused(Exception):
    """A form without this session's CSRF token."""


@dataclass(frozen=True)
class Viewer:
    """A request allowed in: `csrf` goes into every form it is shown; `open` when there is no token at all."""

    csrf: str
    open: bool
    by_header: bool


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF)
    if not isinstance(token, str):
        token = request.session[CSRF] = secrets.token_urlsafe(24)
    return token


def viewer(request: Request) -> Viewer:
    """The dependency of every page: who is looking, or SignInNeeded."""
    token: str | None = request.app.state.token
    by_header = token is not None and _bearer_ok(request, token)
    if not by_header and not signed_in(request, token):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(target)
    return Viewer(csrf=csrf_token(request), open=token is None, by_header=by_header)


async def check_form(request: Request, user: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """For POSTs: the session's CSRF token must come back in the form (not needed with the bearer header,
    which no other site can make a browser send)."""
    if not user.by_header:
        form = await request.form()
        sent = form.get(CSRF)
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
            raise FormRefused()
    return user


User = Annotated[Viewer, Depends(viewer)]
FormUser = Annotated[Viewer, Depends(check_form)]


def _safe_next(target: str) -> str:
    """Only a path of this UI: never another site (an open redirect)."""
    return target if target.startswith("/ui") and not target.startswith("//") else "/ui/runs"


@router.get("/login")
async def login_page(request: Request, next: str = "/ui/runs") -> Response:
    if signed_in(request, request.app.state.token):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html.j2", next=_safe_next(next), error="", csrf=csrf_token(request))


def _login_again(request: Request, next_url: str, error: str, code: int) -> Response:
    return render(
        request, "login.html.j2", next=_safe_next(next_url), error=error, csrf=csrf_token(request), code=code
    )


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form(max_length=2000)] = "/ui/runs",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    expected: str | None = request.app.state.token
    if not hmac.compare_digest(csrf.encode(), csrf_token(request).encode()):
        return _login_again(request, next, BAD_FORM, 400)
    if expected is not None and not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return _login_again(request, next, WRONG_TOKEN, 401)
    request.session.clear()
    if expected is not None:
        request.session[AUTH] = proof(expected)
    request.session[CSRF] = secrets.token_urlsafe(24)  # a new one after sign-in
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request, user: FormUser) -> Response:
    request.session.clear()
    return RedirectResponse("/ui/login", status_code=303)


def sign_in_page(request: Request, exc: Exception) -> Response:
    """SignInNeeded's answer: a page asks for the login form; htmx and scripts get 401."""
    assert isinstance(exc, SignInNeeded)
    if request.headers.get("hx-request") or request.method != "GET":
        return Response("sign in first", status_code=401, media_type="text/plain")
    return RedirectResponse(f"/ui/login?next={quote(exc.next_url, safe='/')}", status_code=303)


def form_refused(request: Request, exc: Exception) -> Response:
    return render(request, "message.html.j2", title="Form refused", message=BAD_FORM, code=403)
