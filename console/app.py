"""The console's web application (Starlette): routes, and the services they use.

``Services.open(config)`` opens everything once per process: accounts, the relay store (review desk), the
galleries, the search desk, the fleet watcher and the audit log. ``create_app(services)`` makes the ASGI app;
``lookout console`` serves it with uvicorn.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from python_multipart.exceptions import MultipartParseError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lookout.console.accounts import ROLES, Accounts, LoginRefused
from lookout.console.alerts import ReviewDesk, open_relay_store
from lookout.console.audit import AuditFilter, AuditLog, RelayAuditLog, SqliteAuditLog, to_csv
from lookout.console.config import ConsoleConfig
from lookout.console.fleet import FleetWatcher
from lookout.console.galleries import PEOPLE_PAGE, GalleryDesk
from lookout.console.searching import SearchDesk
from lookout.console.uploads import read_upload
from lookout.console.web import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Forbidden,
    NotLoggedIn,
    Pages,
    SecurityHeaders,
    client_address,
    redirect,
)
from lookout.errors import LookoutError
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.policy import Policy
from lookout.log import get_logger
from lookout.topics import Topics

log = get_logger(__name__)

STATIC = Path(__file__).parent / "static"
AUDIT_PAGE = 50
INTERNAL_PATH = re.compile(r"/[A-Za-z0-9/_.-]*")
MAX_REASON = 500


@dataclass
class Services:
    config: ConsoleConfig
    accounts: Accounts
    audit: AuditLog
    review: ReviewDesk | None
    galleries: GalleryDesk
    search: SearchDesk
    fleet: FleetWatcher | None
    policy: Policy

    @classmethod
    def open(cls, config: ConsoleConfig, *, start_fleet: bool = True) -> Services:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        accounts = Accounts(config.database, config.sessions, config.login)
        policy = Policy.load(config.policy) if config.policy else Policy.default()
        review: ReviewDesk | None = None
        audit: AuditLog
        if config.relay_config or config.relay_store:
            store, suppress_for_s = open_relay_store(config.relay_config, config.relay_store)
            review = ReviewDesk(store, suppress_for_s)
            audit = RelayAuditLog(store)  # one log with `lookout review`'s decisions
        else:
            audit = SqliteAuditLog(config.database)
        pipeline = _LazyPipeline(config)
        galleries = GalleryDesk(config.galleries, policy, config.data_dir, audit, pipeline.get)
        search = SearchDesk(
            galleries,
            policy,
            config.location,
            config.purpose,
            audit,
            pipeline.get,
            pipeline.lock,
            config.search.per_user_per_hour,
        )
        fleet = None
        if config.fleet.enabled:
            fleet = FleetWatcher(config.mqtt, Topics(config.topics.prefix), config.fleet.offline_after_s)
            if start_fleet:
                fleet.start()
        return cls(config, accounts, audit, review, galleries, search, fleet, policy)

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        self.galleries.close()
        self.accounts.close()
        if self.review is not None:
            self.review.close()


class _LazyPipeline:
    """Face pipelines, one per embedder, each opened at first use (a search, a gallery change) and kept.

    A gallery is searched and updated with the embedder it was built with (its manifest says which), so
    galleries built with different models can sit side by side in one console. One lock: the CPU is the limit.
    """

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._pipelines: dict[str, FacePipeline] = {}
        self._open_lock = threading.Lock()

    def get(self, embedder: str) -> FacePipeline:
        with self._open_lock:
            if embedder not in self._pipelines:
                m = self.config.models
                kwargs: dict[str, Any] = {"model_dir": m.model_dir, "device": m.device, "embedder": embedder}
                if m.detector:
                    kwargs["detector"] = m.detector
                self._pipelines[embedder] = FacePipeline.open(PipelineConfig(**kwargs))
            return self._pipelines[embedder]


def _reason(form, field: str = "reason", required: bool = True) -> str:
    text = " ".join(str(form.get(field) or "").split())[:MAX_REASON]
    if required and not text:
        raise HTTPException(400, "Give a reason: it goes into the audit log.")
    return text


class ConsoleApp:
    """Route handlers. Each one checks the session and role first."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.pages = Pages(services, services.config.secure_cookies)

    # -- login -------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        after = _internal_path(request.query_params.get("next"))
        if self.s.accounts.session(request.cookies.get(SESSION_COOKIE)):
            return redirect(after)
        return self._login_form(request, None, after=after)

    def _login_form(self, request: Request, error: str | None, status: int = 200, after: str = "/") -> Response:
        response = HTMLResponse("")
        token = self.pages.login_cookie(response)
        page = self.pages.render(request, "login.html", None, status=status, error=error, login_csrf=token, after=after)
        page.raw_headers += [h for h in response.raw_headers if h[0] == b"set-cookie"]
        return page

    async def login(self, request: Request) -> Response:
        try:
            form = await self.pages.form(request, None)
        except HTTPException as err:
            return self._login_form(request, err.detail, 403)
        after = _internal_path(str(form.get("next") or ""))
        username, password = str(form.get("username") or "")[:64], str(form.get("password") or "")[:1024]
        try:
            token = await run_in_threadpool(self.s.accounts.login, username, password, client_address(request))
        except LoginRefused as err:
            return self._login_form(request, str(err), 401, after)
        response = redirect(after)
        self.pages.set_session_cookie(response, token)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.pages.session(request)
        await self.pages.form(request, session)
        self.s.accounts.logout(session)
        self.s.search.uploads.drop_owner(session.token_sha256)
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def home(self, request: Request) -> Response:
        session = self.pages.session(request)
        for permission, url in (("review", "/review"), ("galleries.view", "/galleries"), ("fleet", "/fleet")):
            if session.user.may(permission):
                return redirect(url)
        return redirect("/login")

    # -- review ------------------------------------------------------------------------------

    def _desk(self) -> ReviewDesk:
        if self.s.review is None:
            raise HTTPException(404, "No relay store configured (relay_config in console.yaml): nothing to review.")
        return self.s.review

    async def review_queue(self, request: Request) -> Response:
        session = self.pages.require(request, "review")
        queue = self._desk().pending()
        if queue:
            return redirect(f"/review/{queue[0].id}")
        recent = self._desk().recent(20)
        return self.pages.render(
            request, "review.html", session, queue=queue, alert=None, recent=recent, names=self._names(recent)
        )

    def _names(self, alerts: list[Any]) -> dict[str, str]:
        """person id -> name for the alerts on a page, from each alert's gallery (ids where unknown)."""
        names: dict[str, str] = {}
        for gid in {a.gallery_id for a in alerts} & set(self.s.galleries.settings):
            try:
                names.update(self.s.galleries.names(gid, [a.person_id for a in alerts if a.gallery_id == gid]))
            except LookoutError:
                continue
        return names

    async def review_alert(self, request: Request) -> Response:
        session = self.pages.require(request, "review")
        desk = self._desk()
        alert_id = int(request.path_params["alert_id"])
        try:
            alert = desk.alert(alert_id)
        except LookoutError:
            raise HTTPException(404, f"No alert {alert_id}.") from None
        queue = desk.pending()
        ids = [a.id for a in queue]
        position = ids.index(alert.id) if alert.id in ids else None
        person, photos, gallery_note = self._person_evidence(alert.gallery_id, alert.person_id)
        names = self._names(queue)
        return self.pages.render(
            request,
            "review.html",
            session,
            queue=queue,
            alert=alert,
            sightings=desk.sightings(alert.id),
            person=person,
            photos=photos,
            gallery_note=gallery_note,
            previous_id=ids[position - 1] if position else None,
            next_id=ids[position + 1] if position is not None and position + 1 < len(ids) else None,
            recent=[],
            names=names,
        )

    def _person_evidence(self, gallery_id: str, person_id: str) -> tuple[Any, list[dict], str | None]:
        if gallery_id not in self.s.galleries.settings:
            return None, [], f"gallery {gallery_id!r} is not configured in this console: no enrolled photos to show"
        try:
            person = self.s.galleries.person(gallery_id, person_id)
        except LookoutError as err:
            return None, [], str(err)
        if person is None:
            return None, [], "this person is no longer in the gallery's current version"
        return person, person.photos, None

    async def review_decide(self, request: Request) -> Response:
        session = self.pages.require(request, "review")
        form = await self.pages.form(request, session)
        alert_id = int(request.path_params["alert_id"])
        decision = request.path_params["decision"]
        desk = self._desk()
        try:
            if decision == "confirm":
                released = await run_in_threadpool(
                    desk.confirm, alert_id, session.user.username, _reason(form, "note", False)
                )
                notice = f"Alert {alert_id} confirmed: {released} alert message(s) released."
            elif decision == "reject":
                reason = _reason(form)
                suppress = form.get("suppress") == "on"
                await run_in_threadpool(desk.reject, alert_id, session.user.username, reason, suppress)
                notice = f"Alert {alert_id} rejected: nothing is sent" + (
                    "; this person is suppressed at this camera." if suppress else "."
                )
            else:
                raise HTTPException(404, "No such decision.")
        except LookoutError as err:
            return self.pages.redirect(session, f"/review/{alert_id}", str(err))
        nxt = desk.pending(1)
        return self.pages.redirect(session, f"/review/{nxt[0].id}" if nxt else "/review", notice)

    async def alert_link(self, request: Request) -> Response:
        """``<console_url>/alerts/<id>``, the link in the relay's texts and webhooks: the alert's review page
        (through the login page when there is no session yet)."""
        target = f"/review/{int(request.path_params['alert_id'])}"
        if self.s.accounts.session(request.cookies.get(SESSION_COOKIE)) is None:
            return redirect("/login?" + urlencode({"next": target}))
        return redirect(target)

    async def alert_crop(self, request: Request) -> Response:
        self.pages.require(request, "review")
        data = self._desk().crop(int(request.path_params["alert_id"]))
        if data is None:
            raise HTTPException(404, "No crop for this alert (the device's policy may forbid crops).")
        return Response(data, media_type="image/jpeg")

    # -- galleries ---------------------------------------------------------------------------

    async def galleries(self, request: Request) -> Response:
        session = self.pages.require(request, "galleries.view")
        rows = []
        for gid in sorted(self.s.galleries.settings):
            versions, error = [], None
            try:
                versions = self.s.galleries.versions(gid)
            except LookoutError as err:
                error = str(err)
            rows.append({"id": gid, "versions": versions, "error": error})
        return self.pages.render(request, "galleries.html", session, galleries=rows)

    async def gallery(self, request: Request) -> Response:
        session = self.pages.require(request, "galleries.view")
        gid = request.path_params["gid"]
        desk = self.s.galleries
        if gid not in desk.settings:
            raise HTTPException(404, f"No gallery {gid!r}.")
        query = request.query_params.get("q", "")[:100]
        page = max(1, _int(request.query_params.get("page"), 1))
        people: list[Any] = []
        error, manifest, withdrawals, total = None, None, [], 0
        try:
            manifest = desk.manifest(gid)
            people, total = desk.people(gid, query, (page - 1) * PEOPLE_PAGE, PEOPLE_PAGE)
            withdrawals = desk.withdrawals(gid)
        except LookoutError as err:
            error = str(err)
        return self.pages.render(
            request,
            "gallery.html",
            session,
            gid=gid,
            versions=desk.versions(gid),
            manifest=manifest,
            people=people,
            total=total,
            query=query,
            page=page,
            pages=max(1, math.ceil(total / PEOPLE_PAGE)),
            withdrawals=withdrawals,
            error=error,
            report=desk.report(gid),
            read_only=desk.can_change(gid),
            may_change=session.user.may("galleries.change"),
        )

    async def gallery_photo(self, request: Request) -> Response:
        session = self.pages.session(request)
        if not (session.user.may("galleries.view") or session.user.may("review")):
            raise Forbidden("galleries.view")
        gid, photo_id = request.path_params["gid"], request.query_params.get("id", "")
        try:
            data = await run_in_threadpool(self.s.galleries.thumbnail, gid, photo_id)
        except LookoutError:
            data = None
        if data is None:
            raise HTTPException(404, "Photo not available here.")
        return Response(data, media_type="image/jpeg")

    async def gallery_change(self, request: Request) -> Response:
        session = self.pages.require(request, "galleries.change")
        form = await self.pages.form(request, session)
        gid, action = request.path_params["gid"], request.path_params["action"]
        reason = _reason(form)
        desk = self.s.galleries
        try:
            if action == "withdraw":
                item = str(form.get("photo_id") or "")
                report = await run_in_threadpool(desk.withdraw_photo, gid, item, session.user.username, reason)
                what = f"Consent withdrawn for photo {item}"
            elif action == "remove":
                item = str(form.get("person_id") or "")
                report = await run_in_threadpool(desk.remove_person, gid, item, session.user.username, reason)
                what = f"Person {item} removed"
            elif action == "reinstate":
                item = str(form.get("item") or "")
                report = await run_in_threadpool(desk.reinstate, gid, item, session.user.username, reason)
                what = f"{item} reinstated (may be enrolled again)"
            else:
                raise HTTPException(404, "No such change.")
        except LookoutError as err:
            return self.pages.redirect(session, f"/galleries/{gid}", str(err))
        m = report.manifest
        return self.pages.redirect(
            session,
            f"/galleries/{gid}",
            f"{what}: version {m.version} signed and published with its delta; devices have it at their next pull.",
        )

    # -- search ------------------------------------------------------------------------------

    async def search_page(self, request: Request) -> Response:
        session = self.pages.require(request, "search")
        return self.pages.render(
            request,
            "search.html",
            session,
            default_taken_in=self.s.config.location,
            galleries=sorted(self.s.galleries.settings),
            outcome=None,
            upload=None,
            error=None,
        )

    async def search_run(self, request: Request) -> Response:
        session = self.pages.require(request, "search")
        limits = self.s.config.uploads
        galleries = sorted(self.s.galleries.settings)
        declared = int(request.headers.get("content-length") or 0)
        if declared > limits.max_bytes + 64 * 1024:
            return self._search_error(
                request,
                session,
                galleries,
                f"upload: the request is {declared:,} bytes; the limit is {limits.max_bytes:,}",
                413,
            )
        try:
            form = await self.pages.form(request, session, max_part_size=limits.max_bytes + 1)
        except MultipartParseError as err:
            return self._search_error(request, session, galleries, f"upload: refused ({err})", 413)
        gid = str(form.get("gallery") or (galleries[0] if galleries else ""))
        try:
            upload_id = str(form.get("upload_id") or "")
            if upload_id:
                upload = self.s.search.uploads.get(session.token_sha256, upload_id)
            else:
                file = form.get("photo")
                if file is None or isinstance(file, str):
                    raise LookoutError("upload: choose a photo to search with")
                data = await file.read(limits.max_bytes + 1)
                image = await run_in_threadpool(
                    read_upload, data, file.filename or "", limits.max_bytes, limits.max_pixels
                )
                upload = self.s.search.uploads.put(session.token_sha256, file.filename or "photo", image)
            box = _box(form)
            taken_in = str(form.get("taken_in") or "") or None
            outcome = await run_in_threadpool(
                self.s.search.search, session.user.username, gid, upload, box, 5, taken_in
            )
        except LookoutError as err:
            return self._search_error(request, session, galleries, str(err), 400)
        return self.pages.render(
            request,
            "search.html",
            session,
            default_taken_in=self.s.config.location,
            galleries=galleries,
            outcome=outcome,
            upload=upload,
            error=None,
            gallery=gid,
            taken_in=taken_in,
        )

    def _search_error(
        self, request: Request, session: Any, galleries: list[str], message: str, status: int
    ) -> Response:
        return self.pages.render(
            request,
            "search.html",
            session,
            default_taken_in=self.s.config.location,
            status=status,
            galleries=galleries,
            outcome=None,
            upload=None,
            error=message,
        )

    async def search_image(self, request: Request) -> Response:
        session = self.pages.require(request, "search")
        try:
            upload = self.s.search.uploads.get(session.token_sha256, request.path_params["upload_id"])
        except LookoutError:
            raise HTTPException(404, "This upload has expired.") from None
        return Response(upload.display_jpeg, media_type="image/jpeg")

    # -- fleet -------------------------------------------------------------------------------

    async def fleet(self, request: Request) -> Response:
        session = self.pages.require(request, "fleet")
        watcher = self.s.fleet
        devices = watcher.snapshot() if watcher else []
        last = self.s.review.last_match_by_device() if self.s.review else {}
        return self.pages.render(
            request,
            "fleet.html",
            session,
            devices=devices,
            last=last,
            connected=bool(watcher and watcher.connected.is_set()),
            stopped=watcher.stopped if watcher else None,
            enabled=watcher is not None,
            broker=f"{self.s.config.mqtt.host}:{self.s.config.mqtt.port}",
            offline_after_s=self.s.config.fleet.offline_after_s,
            now=time.time(),
        )

    # -- audit -------------------------------------------------------------------------------

    def _audit_filter(self, request: Request) -> AuditFilter:
        q = request.query_params
        return AuditFilter(
            actor=q.get("actor") or None,
            action=q.get("action") or None,
            text=q.get("text") or None,
            since=_day(q.get("since")),
            until=_day(q.get("until"), end=True),
        )

    async def audit(self, request: Request) -> Response:
        session = self.pages.require(request, "audit")
        flt = self._audit_filter(request)
        page = max(1, _int(request.query_params.get("page"), 1))
        total = self.s.audit.count(flt)
        entries = self.s.audit.entries(flt, AUDIT_PAGE, (page - 1) * AUDIT_PAGE)
        pages = max(1, math.ceil(total / AUDIT_PAGE))
        return self.pages.render(
            request,
            "audit.html",
            session,
            entries=entries,
            flt=flt,
            total=total,
            page=page,
            pages=pages,
            query=request.url.query,
            raw={k: request.query_params.get(k, "") for k in ("actor", "action", "text", "since", "until")},
        )

    async def audit_csv(self, request: Request) -> Response:
        session = self.pages.require(request, "audit")
        flt = self._audit_filter(request)
        entries = self.s.audit.entries(flt, 1_000_000, 0)
        self.pages.audit(session, "audit.export", "audit log", None, {"rows": len(entries), "filter": flt.__dict__})
        return PlainTextResponse(
            to_csv(entries),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="lookout-audit.csv"'},
        )

    # -- accounts ----------------------------------------------------------------------------

    async def accounts(self, request: Request) -> Response:
        session = self.pages.require(request, "accounts")
        return self.pages.render(request, "accounts.html", session, users=self.s.accounts.users(), roles=ROLES)

    async def accounts_change(self, request: Request) -> Response:
        session = self.pages.require(request, "accounts")
        form = await self.pages.form(request, session)
        action = request.path_params["action"]
        username = str(form.get("username") or "")
        try:
            if action == "create":
                role = str(form.get("role") or "")
                await run_in_threadpool(self.s.accounts.add_user, username, role, str(form.get("password") or ""))
                self.pages.audit(session, "account.create", f"user {username}", None, {"role": role})
                notice = f"User {username} ({role}) created."
            elif action in ("disable", "enable"):
                if username == session.user.username:
                    raise LookoutError("you cannot disable your own account")
                self.s.accounts.set_disabled(username, action == "disable")
                self.pages.audit(session, f"account.{action}", f"user {username}", None, {})
                notice = f"User {username} {action}d."
            else:
                raise HTTPException(404, "No such change.")
        except LookoutError as err:
            return self.pages.redirect(session, "/accounts", str(err))
        return self.pages.redirect(session, "/accounts", notice)

    async def own_account(self, request: Request) -> Response:
        session = self.pages.session(request)
        return self.pages.render(request, "account.html", session)

    async def own_password(self, request: Request) -> Response:
        session = self.pages.session(request)
        form = await self.pages.form(request, session)
        new, again = str(form.get("new") or ""), str(form.get("again") or "")
        try:
            if new != again:
                raise LookoutError("the two new passwords differ")
            await run_in_threadpool(self.s.accounts.change_password, session, str(form.get("current") or ""), new)
        except LookoutError as err:
            return self.pages.redirect(session, "/account", str(err))
        self.pages.audit(session, "account.password", f"user {session.user.username}", None, {})
        return self.pages.redirect(session, "/account", "Password changed; your other sessions have ended.")

    # -- errors ------------------------------------------------------------------------------

    async def not_logged_in(self, request: Request, exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.endswith((".jpg", ".csv")):
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse("Log in first.", status_code=401)

    async def forbidden(self, request: Request, exc: Exception) -> Response:
        session = self.pages.session(request)
        return self.pages.render(
            request, "error.html", session, status=403, message="Your role does not allow this page."
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        try:
            session = self.pages.session(request)
        except NotLoggedIn:
            session = None
        message = exc.detail if isinstance(exc.detail, str) else "Something went wrong."
        return self.pages.render(request, "error.html", session, status=exc.status_code, message=message)


def _box(form) -> tuple[float, float, float, float] | None:
    values = [form.get(k) for k in ("x1", "y1", "x2", "y2")]
    if not any(values):
        return None
    try:
        x1, y1, x2, y2 = (float(str(v)) for v in values)
    except ValueError:
        raise LookoutError("box: the drawn box is not four numbers") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 - x1 < 8 or y2 - y1 < 8:
        raise LookoutError("box: draw a box at least 8 pixels wide and high around one face")
    return (x1, y1, x2, y2)


def _internal_path(text: str | None) -> str:
    """Where to go after logging in: a path of this console only (never another site, never a scheme)."""
    if text and INTERNAL_PATH.fullmatch(text) and "//" not in text:
        return text
    return "/"


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _day(text: str | None, end: bool = False) -> float | None:
    if not text:
        return None
    try:
        t = time.mktime(time.strptime(text, "%Y-%m-%d")) - time.timezone
    except ValueError:
        return None
    return t + 86400 if end else t


def create_app(services: Services) -> Starlette:
    c = ConsoleApp(services)
    routes = [
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/", c.home),
        Route("/review", c.review_queue),
        Route("/review/{alert_id:int}", c.review_alert),
        Route("/review/{alert_id:int}/{decision}", c.review_decide, methods=["POST"]),
        Route("/alerts/{alert_id:int}", c.alert_link),
        Route("/alerts/{alert_id:int}/crop.jpg", c.alert_crop),
        Route("/galleries", c.galleries),
        Route("/galleries/{gid}", c.gallery),
        Route("/galleries/{gid}/photo.jpg", c.gallery_photo),
        Route("/galleries/{gid}/{action}", c.gallery_change, methods=["POST"]),
        Route("/search", c.search_page, methods=["GET"]),
        Route("/search", c.search_run, methods=["POST"]),
        Route("/search/upload/{upload_id}.jpg", c.search_image),
        Route("/fleet", c.fleet),
        Route("/audit", c.audit),
        Route("/audit.csv", c.audit_csv),
        Route("/account", c.own_account, methods=["GET"]),
        Route("/account", c.own_password, methods=["POST"]),
        Route("/accounts", c.accounts),
        Route("/accounts/{action}", c.accounts_change, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={NotLoggedIn: c.not_logged_in, Forbidden: c.forbidden, HTTPException: c.http_error},
    )
    app.add_middleware(SecurityHeaders, hsts=services.config.tls is not None)
    return app
