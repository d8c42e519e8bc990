"""`Progress`: the rows/s line that `widedeep prepare` prints on stderr while it reads, merges and writes."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Rows/s on stderr, at most every `interval` seconds, when enabled."""

    def __init__(
        self, label: str, enabled: bool, *, interval: float = 2.0, stream: TextIO | None = None
    ):
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.rows = 0
        self._start = self._last = time.monotonic()

    def update(self, rows: int = 1) -> None:
        before, self.rows = self.rows, self.rows + rows
        if self.enabled and before >> 12 != self.rows >> 12:  # looks at the clock every 4096 rows
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def done(self) -> None:
        if self.enabled:
            self._print(time.monotonic(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-9)
        end = " done" if final else ""
        print(
            f"{self.label}: {self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s{end}",
            file=self.stream,
            flush=True,
        )
