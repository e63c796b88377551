"""HTTP GET with retries, backoff and a polite rate limit, for sources and photo downloads; bounded.

What a hostile or broken server cannot do to a gallery build:

- make it read anything but http(s): other schemes (``file:``, ``ftp:``, a bare path) are
  refused, and so is a redirect to one (at most ``MAX_REDIRECTS`` redirects are followed);
- fill its memory: a body larger than ``max_bytes`` is cut off (a ``Content-Length`` over
  it is refused before the body is read);
- hold it forever: ``timeout_s`` is a deadline for the whole request, connection, TLS
  handshake, status line, headers and body together. A per-read socket timeout is not one: a
  server sending one header byte a second never trips it (http.client accepts 100 header
  lines of 64 KiB: days). So a watchdog shuts the socket down when the deadline passes,
  whatever http.client is waiting for, and the request fails saying so.

The device's bundle puller (``lookout.gallery.pull``) uses it too, with conditional requests
(``fetch(..., headers=...)`` returns a 304 as it is) and downloads written to a file (``sink``).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

from lookout.log import get_logger
from lookout.redact import redact_url

log = get_logger(__name__)

USER_AGENT = "lookout-gallery/1 (+https://github.com/lookout)"
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
SCHEMES = ("http", "https")


class FetchError(Exception):
    def __init__(self, url: str, reason: str, status: int | None = None, retry: bool = False) -> None:
        super().__init__(f"{redact_url(url)}: {reason}")  # the message is logged: no credentials (A15)
        self.url = url
        self.reason = reason
        self.status = status
        self.retry = retry


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL this client will fetch, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as err:
        return f"not a URL ({err})"
    if parts.scheme.lower() not in SCHEMES:
        return f"only http and https URLs are fetched, not {parts.scheme + ':' if parts.scheme else 'a local path'}"
    if not parts.hostname:
        return "URL has no host"
    if any(c in url for c in "\r\n\x00 "):
        return "URL holds blanks or control characters"
    return None


@dataclass(frozen=True)
class Response:
    """One answer: its status (2xx, or 304 to a conditional request), headers and body (empty when written to a sink)."""

    status: int
    headers: Message = field(default_factory=Message)  # case-insensitive ``get``
    body: bytes = b""


class _Watchdog:
    """Shuts a connection's socket down when the deadline passes, whatever http.client is blocked in (connecting,
    the TLS handshake, the status line, the headers, the body): the blocked read returns and the request fails.
    One timer thread per request, cancelled when the request ends."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        self.conn = conn
        self.sock: socket.socket | None = None  # set once connected (http.client may let go of conn.sock later)
        self.fired = threading.Event()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        self.fired.set()
        sock = self.sock or self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # the plain socket's shutdown, under TLS too: it wakes a blocked read
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class HttpClient:
    """GETs at most one request per ``min_interval_s``; retries 5xx, 429 and network errors with exponential
    backoff. Each attempt has ``timeout_s`` in all (a deadline, not a per-read timeout) and may bring back at most
    ``max_bytes``. A request cut off by its deadline is not retried: a server trickling bytes would do it again."""

    def __init__(
        self,
        min_interval_s: float = 0.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 15.0,
        max_bytes: int = 50 << 20,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._last = 0.0
        self.requests = 0

    def _wait_turn(self) -> None:
        with self._lock:
            gap = self._last + self.min_interval_s - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._last = time.monotonic()

    def get(self, url: str, accept: str = "*/*") -> bytes:
        """The body, or FetchError (status 404 etc. without retry; 5xx/network errors after ``retries`` retries)."""
        return self.fetch(url, accept=accept).body

    def fetch(
        self,
        url: str,
        accept: str = "*/*",
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        max_bytes: int | None = None,
        sink: BinaryIO | None = None,
    ) -> Response:
        """One GET with extra request ``headers`` (a 304 answer is returned as it is); the body goes to ``sink``
        when given (from its start again on a retry), else into ``Response.body``. ``timeout_s`` and ``max_bytes``
        override the client's for this request (a large download gets a longer deadline)."""
        problem = http_url_problem(url)
        if problem:
            raise FetchError(url, problem)
        limits = _Limits(timeout_s or self.timeout_s, self.max_bytes if max_bytes is None else max_bytes)
        attempt = 0
        while True:
            self._wait_turn()
            self.requests += 1
            if sink is not None:
                sink.seek(0)
                sink.truncate()
            try:
                return self._get_once(url, accept, dict(headers or {}), limits, sink)
            except FetchError as err:
                if not err.retry or attempt >= self.retries:
                    suffix = f" after {attempt + 1} attempts" if attempt else ""
                    raise FetchError(err.url, err.reason + suffix, err.status) from None
                reason = err.reason
            delay = self.backoff_s * 2**attempt
            log.info("http.retry", url=redact_url(url), reason=reason, attempt=attempt + 1, wait_s=delay)
            time.sleep(delay)
            attempt += 1

    def _get_once(
        self, url: str, accept: str, headers: dict[str, str], limits: _Limits, sink: BinaryIO | None
    ) -> Response:
        deadline = time.monotonic() + limits.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            response, location = self._request(url, accept, headers, deadline, limits, sink)
            if location is None:
                if response.status >= 400:
                    status = response.status
                    raise FetchError(url, f"HTTP {status}", status, retry=status >= 500 or status == 429)
                return response
            target = urllib.parse.urljoin(url, location)
            problem = http_url_problem(target)
            if problem:
                raise FetchError(url, f"redirect to {redact_url(target)!r} refused: {problem}", response.status)
            url = target
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", None)

    def _request(
        self,
        url: str,
        accept: str,
        headers: dict[str, str],
        deadline: float,
        limits: _Limits,
        sink: BinaryIO | None,
    ) -> tuple[Response, str | None]:
        """(response, redirect location or None) of one GET; FetchError on a network problem or at the deadline."""
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        kind = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=self._remaining(url, deadline, limits))
        watchdog = _Watchdog(conn, deadline)
        try:
            with watchdog:
                conn.connect()
                watchdog.sock = conn.sock
                conn.request("GET", path, headers={"User-Agent": self.user_agent, "Accept": accept, **headers})
                resp = conn.getresponse()
                if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                    return Response(resp.status, resp.headers), resp.getheader("Location")
                declared = resp.getheader("Content-Length")
                if declared and declared.strip().isdigit() and int(declared) > limits.max_bytes:
                    raise FetchError(url, f"larger than {limits.max_bytes} bytes (Content-Length {declared.strip()})")
                body = self._read_body(watchdog, resp, url, deadline, limits, sink)
                if watchdog.fired.is_set():  # the body may look complete: the watchdog's shutdown ends it early
                    raise TimeoutError
                return Response(resp.status, resp.headers, body), None
        except FetchError:
            raise
        except (TimeoutError, OSError, http.client.HTTPException, ssl.SSLError, ValueError) as err:
            if watchdog.sock is None:  # not connected (refused, unreachable, no TLS): worth another try
                why = f"no connection within {limits.timeout_s:g} s" if watchdog.fired.is_set() else str(err)
                raise FetchError(url, why or type(err).__name__, retry=True) from None
            if watchdog.fired.is_set() or isinstance(err, TimeoutError):  # connected, and the deadline passed
                raise FetchError(url, self._late(limits), retry=False) from None
            raise FetchError(url, str(err) or type(err).__name__, retry=True) from None
        finally:
            conn.close()

    def _read_body(
        self,
        watchdog: _Watchdog,
        resp: http.client.HTTPResponse,
        url: str,
        deadline: float,
        limits: _Limits,
        sink: BinaryIO | None,
    ) -> bytes:
        """The body in chunks (into ``sink`` when given), each read given at most the time left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if watchdog.sock is not None:
                watchdog.sock.settimeout(self._remaining(url, deadline, limits))
            chunk = resp.read1(CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchError(url, f"larger than {limits.max_bytes} bytes")
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)

    @staticmethod
    def _late(limits: _Limits) -> str:
        return f"no complete answer within {limits.timeout_s:g} s (deadline for the whole request)"

    def _remaining(self, url: str, deadline: float, limits: _Limits) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(url, self._late(limits), retry=False)
        return left


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    max_bytes: int
