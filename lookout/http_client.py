"""HTTP GET with retries, backoff and a polite rate limit, for sources and photo downloads."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from lookout.log import get_logger

log = get_logger(__name__)

USER_AGENT = "lookout-gallery/1 (+https://github.com/lookout)"


class FetchError(Exception):
    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class HttpClient:
    """GETs at most one request per ``min_interval_s``; retries 5xx, 429 and timeouts with exponential backoff."""

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
        attempt = 0
        while True:
            self._wait_turn()
            self.requests += 1
            try:
                req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": accept})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    data: bytes = resp.read(self.max_bytes + 1)
                if len(data) > self.max_bytes:
                    raise FetchError(url, f"larger than {self.max_bytes} bytes")
                return data
            except urllib.error.HTTPError as err:
                retry = err.code >= 500 or err.code == 429
                reason, status = f"HTTP {err.code}", err.code
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                retry, status = True, None
                reason = str(getattr(err, "reason", err)) or type(err).__name__
            if not retry or attempt >= self.retries:
                raise FetchError(url, reason + (f" after {attempt + 1} attempts" if attempt else ""), status)
            delay = self.backoff_s * 2**attempt
            log.info("http.retry", url=url, reason=reason, attempt=attempt + 1, wait_s=delay)
            time.sleep(delay)
            attempt += 1
