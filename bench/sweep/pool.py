"""Runs of a sweep in parallel on one machine, without timing two runs together.

``sweep.jobs=N`` runs up to N workers at once, each a fresh process. On CPU a timing-grade run
(one that times its steps) runs alone: the pool drains before it starts and starts nothing
beside it; throughput-only runs (``run.timing=false``, vmapped seeds) run N at a time. With
several GPUs every worker gets a GPU of its own (``CUDA_VISIBLE_DEVICES``), so each run has its
device to itself. Each row records whether it was timed exclusively and the concurrency.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class Placement:
    """Where and beside what one work item runs.

    Attributes:
      timing_exclusive: nothing else ran on the item's device while it ran (on CPU: no other
        run at all; on GPU: no other run on its GPU).
      concurrent_jobs: the most runs the sweep allowed at once while this one ran.
      gpu: the GPU index given to the worker (CUDA_VISIBLE_DEVICES), or None.
    """

    timing_exclusive: bool
    concurrent_jobs: int
    gpu: str | None = None

    def env(self) -> dict[str, str]:
        """Environment variables for the item's worker process."""
        return {} if self.gpu is None else {"CUDA_VISIBLE_DEVICES": self.gpu}


def visible_gpus() -> list[str]:
    """Indices of the NVIDIA GPUs this process may use (empty without any)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA library or no GPU
        return []


def run_pool(items: Sequence[Item], jobs: int, exclusive: Callable[[Item], bool],
             launch: Callable[[Item, Placement], Any],
             gpus: Sequence[str] = ()) -> Iterator[tuple[Item, Placement, Any]]:
    """Run ``launch(item, placement)`` for every item, at most ``jobs`` at once, and yield
    ``(item, placement, result)`` as each finishes (in the calling thread).

    Without GPUs, items for which ``exclusive`` is true run alone; the others go first, in
    parallel. With GPUs, at most one item per GPU at a time, each exclusive on its GPU.
    """
    if gpus:
        slots: deque[str | None] = deque(list(gpus)[: max(1, jobs)])
        width = len(slots)
        queue = deque(items)
    else:
        width = max(1, jobs)
        slots = deque([None] * width)
        queue = deque(sorted(items, key=lambda it: bool(exclusive(it))))  # stable
    running: dict[Future, tuple[Item, Placement]] = {}
    alone_running = False
    with ThreadPoolExecutor(max_workers=width) as executor:
        while queue or running:
            while queue and slots:
                item = queue[0]
                alone = not gpus and bool(exclusive(item))
                if alone and running:
                    break  # wait for the pool to drain
                if alone_running:
                    break  # an exclusive run is going
                queue.popleft()
                gpu = slots.popleft()
                placement = Placement(timing_exclusive=bool(gpus) or alone or width == 1,
                                      concurrent_jobs=1 if alone else width, gpu=gpu)
                running[executor.submit(launch, item, placement)] = (item, placement)
                if alone:
                    alone_running = True
                    break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                item, placement = running.pop(future)
                slots.append(placement.gpu)
                alone_running = False if not running else alone_running
                yield item, placement, future.result()
