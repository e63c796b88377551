"""HTTP GET with retries, backoff and a polite rate limit, for sources and photo downloads; bounded.

What a hostile or broken server cannot do to a gallery build:

- make it read anything but http(s): other schemes (``file:``, ``ftp:``, a bare path) are
  refused, and so is a redirect to one (at most ``MAX_REDIRECTS`` redirects are followed);
- fill its memory: a body larger than ``max_bytes`` is cut off (a ``Content-Length`` over
  it is refused before the body is read);
- hold it forever: ``timeout_s`` is a deadline for the whole request, connection, headers
  and body together; a server trickling a few bytes at a time is cut off when it passes.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse

from lookout.log import get_logger

log = get_logger(__name__)

USER_AGENT = "lookout-gallery/1 (+https://github.com/lookout)"
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
SCHEMES = ("http", "https")


class FetchError(Exception):
    def __init__(self, url: str, reason: str, status: int | None = None, retry: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
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


class HttpClient:
    """GETs at most one request per ``min_interval_s``; retries 5xx, 429 and timeouts with exponential backoff.
    Each attempt has ``timeout_s`` in all and may bring back at most ``max_bytes``."""

    def __init__(
        self,
        min_interval_s: float = 0.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 15.0,
        max_bytes: int = 50 << 20,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
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
        """The body, or FetchError (status 404 etc. without retry; 5xx/timeouts after ``retries`` retries)."""
        problem = http_url_problem(url)
        if problem:
            raise FetchError(url, problem)
        attempt = 0
        while True:
            self._wait_turn()
            self.requests += 1
            try:
                return self._get_once(url, accept, time.monotonic() + self.timeout_s)
            except FetchError as err:
                if not err.retry or attempt >= self.retries:
                    suffix = f" after {attempt + 1} attempts" if attempt else ""
                    raise FetchError(err.url, err.reason + suffix, err.status) from None
                reason = err.reason
            delay = self.backoff_s * 2**attempt
            log.info("http.retry", url=url, reason=reason, attempt=attempt + 1, wait_s=delay)
            time.sleep(delay)
            attempt += 1

    def _get_once(self, url: str, accept: str, deadline: float) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            status, location, body = self._request(url, accept, deadline)
            if location is None:
                if status >= 400:
                    raise FetchError(url, f"HTTP {status}", status, retry=status >= 500 or status == 429)
                return body
            target = urllib.parse.urljoin(url, location)
            problem = http_url_problem(target)
            if problem:
                raise FetchError(url, f"redirect to {target!r} refused: {problem}", status)
            url = target
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", None)

    def _request(self, url: str, accept: str, deadline: float) -> tuple[int, str | None, bytes]:
        """(status, redirect location or None, body) of one GET; FetchError on a network problem."""
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        kind = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=self._remaining(url, deadline))
        try:
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": accept})
            sock = conn.sock  # getresponse() lets go of it when the server will close (HTTP/1.0)
            if sock is not None:
                sock.settimeout(self._remaining(url, deadline))
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                return resp.status, resp.getheader("Location"), b""
            declared = resp.getheader("Content-Length")
            if declared and declared.strip().isdigit() and int(declared) > self.max_bytes:
                raise FetchError(url, f"larger than {self.max_bytes} bytes (Content-Length {declared.strip()})")
            return resp.status, None, self._read_body(sock, resp, url, deadline)
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(url, f"no complete answer within {self.timeout_s:g} s", retry=True) from None
        except (OSError, http.client.HTTPException, ssl.SSLError, ValueError) as err:
            raise FetchError(url, str(err) or type(err).__name__, retry=True) from None
        finally:
            conn.close()

    def _read_body(
        self, sock: socket.socket | None, resp: http.client.HTTPResponse, url: str, deadline: float
    ) -> bytes:
        """The body in chunks, each read given only the time left before the deadline. A body still
        coming when the deadline passes (a server trickling bytes) is not retried: it would trickle again."""
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = self._remaining(url, deadline, retry=False)
            if sock is not None:
                sock.settimeout(remaining)
            try:
                chunk = resp.read1(CHUNK)
            except TimeoutError:
                raise FetchError(url, f"body not complete within {self.timeout_s:g} s (deadline)") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(url, f"larger than {self.max_bytes} bytes")
            chunks.append(chunk)

    def _remaining(self, url: str, deadline: float, retry: bool = True) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(
                url, f"no complete answer within {self.timeout_s:g} s (deadline for the whole request)", retry=retry
            )
        return left
