"""Progress lines for long sweeps: runs done / total, the current run, elapsed and remaining."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Prints one line when a run starts and one when it ends, with an estimate of time left.

    The estimate is the mean time of the runs executed so far times the runs still to go.
    """

    def __init__(self, total: int, stream: TextIO = sys.stdout) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.started = time.perf_counter()
        self._run_started = self.started
        self._width = len(str(total))

    def _prefix(self) -> str:
        return f"[{self.done + 1:>{self._width}}/{self.total}]"

    def start(self, label: str) -> None:
        self._run_started = time.perf_counter()
        print(f"{self._prefix()} {label} ...", file=self.stream, flush=True)

    def finish(self, outcome: str, label: str | None = None) -> None:
        """A run ended with ``outcome``; ``label`` names it where its start line is not the
        line just above (runs in parallel, seeds trained together)."""
        now = time.perf_counter()
        prefix = self._prefix()
        self.done += 1
        elapsed = now - self.started
        remaining = elapsed / self.done * (self.total - self.done)
        named = f"{label}: " if label else ""
        print(f"{prefix}   {named}{outcome} in {now - self._run_started:.1f}s | elapsed "
              f"{_clock(elapsed)}, remaining ~{_clock(remaining)}", file=self.stream, flush=True)
