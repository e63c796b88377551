"""What every console page shares: sessions from cookies, permissions, CSRF, templates, security headers.

Rules the pages rely on:
- nothing but ``/login`` and ``/static`` answers without a live session;
- every POST carries the session's CSRF token (the login form: a double-submit cookie), compared in constant time;
- every response says ``no-store`` (pages show faces), forbids framing, and runs no inline script (CSP);
- a message after a change ("alert 12 confirmed") is kept server-side for the session and shown once, never carried
  in the URL (a crafted link cannot put words on a reviewer's page).
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookout.console.accounts import Session
from lookout.console.audit import AuditEntry
from lookout.events import format_utc

SESSION_COOKIE = "lookout_session"
LOGIN_COOKIE = "lookout_login"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
TEMPLATES = Path(__file__).parent / "templates"


class NotLoggedIn(Exception):
    """No live session: GET goes to the login page, anything else gets 401."""


class Forbidden(Exception):
    """Logged in, but the role does not allow this."""


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = clock
    env.filters["pct"] = lambda v: f"{v:.1%}"
    return env


def clock(ts: float | None) -> str:
    return format_utc(ts)


class SecurityHeaders:
    """Pure ASGI middleware: the same headers on every response (also errors and static files)."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                    (b"cache-control", b"private, max-age=300" if static else b"no-store"),
                ]
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Pages:
    """Rendering and the checks every handler makes; holds the app's services."""

    def __init__(self, services: Any, secure_cookies: bool) -> None:
        self.services = services
        self.env = templates()
        self.secure_cookies = secure_cookies
        self._notices: dict[str, str] = {}  # session token digest -> the message its next page shows
        self._notices_lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        session = self.services.accounts.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise NotLoggedIn()
        return session

    def require(self, request: Request, permission: str) -> Session:
        session = self.session(request)
        if not session.user.may(permission):
            raise Forbidden(permission)
        return session

    async def form(self, request: Request, session: Session | None, max_part_size: int = 64 * 1024) -> FormData:
        """The posted form, after the CSRF check (the session's token, or the login cookie before login)."""
        form = await request.form(max_files=1, max_fields=50, max_part_size=max_part_size)
        sent = str(form.get("csrf") or "")
        expected = session.csrf if session else request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(
                403, "The form has expired or did not come from this console: reload the page and try again."
            )
        return form

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, secure=self.secure_cookies, samesite="strict", path="/"
        )

    def login_cookie(self, response: Response) -> str:
        token = secrets.token_urlsafe(24)
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, secure=self.secure_cookies, samesite="strict", path="/login"
        )
        return token

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        notice = None
        if session is not None:
            with self._notices_lock:
                notice = self._notices.pop(session.token_sha256, None)
        html = self.env.get_template(name).render(
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            notice=notice,
            path=request.url.path,
            pending=self._pending(session),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _pending(self, session: Session | None) -> int | None:
        if session is None or not session.user.may("review") or self.services.review is None:
            return None
        try:
            return self.services.review.count_pending()
        except Exception:  # the badge must never break a page
            return None

    def redirect(self, session: Session, url: str, notice: str | None = None) -> RedirectResponse:
        """A redirect after a POST; ``notice`` is shown once on the next page of this session."""
        if notice:
            with self._notices_lock:
                if len(self._notices) > 10_000:  # sessions that never came back
                    self._notices.clear()
                self._notices[session.token_sha256] = notice[:500]
        return RedirectResponse(url, status_code=303)

    def audit(self, session: Session, action: str, target: str, reason: str | None, detail: dict) -> None:
        self.services.audit.record(AuditEntry(time.time(), session.user.username, action, target, reason, detail))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
