"""Progress of long work: a one-line bar on a terminal, occasional structured log lines otherwise."""

from __future__ import annotations

import sys
import time

from lookout.log import get_logger

log = get_logger(__name__)


class Progress:
    """A one-line progress bar on a terminal, occasional log lines otherwise."""

    def __init__(self, total: int, what: str = "photos", enabled: bool = True) -> None:
        self.total, self.what, self.done = total, what, 0
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.t0 = self._last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and self.done < self.total):
            return
        self._last = now
        rate = self.done / max(now - self.t0, 1e-6)
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.what} {rate:.1f}/s "
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif now - self.t0 > 5 and (self.done % 100 == 0 or self.done >= self.total):
            log.info("progress", done=self.done, total=self.total, what=self.what, per_s=round(rate, 1))
