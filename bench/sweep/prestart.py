"""A worker process started ahead of need, so that its start overlaps the sweep's own.

A worker spends over a second importing JAX and the harness before it can run anything; the
sweep spends about as long importing, composing and checking its configs before it has a
first work item. Started at the top of ``python -m bench.sweep``, the first worker does its
imports meanwhile (on a second core) and then waits for its payload on stdin. It is used only
if the sweep's first isolated work item would get a worker with the same environment;
otherwise, or if the sweep has nothing to run, it is stopped at exit. Only the first worker is
started early: later ones would start while a run is being measured.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

WORKER = [sys.executable, "-m", "bench.sweep.worker"]
_waiting: tuple[subprocess.Popen, dict[str, str]] | None = None


def worth_starting(argv: list[str]) -> bool:
    """Whether a sweep with command line ``argv`` will likely run one isolated worker at a time
    in this process: not a multirun (its jobs run elsewhere), not a shared-process or parallel
    sweep, not a collect-only or help call."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if arg in ("-m", "--multirun", "-h", "--help", "--hydra-help", "--info", "-c", "--cfg"):
            return False
        if (key == "sweep.isolate" and value.lower() == "false"
                or key == "sweep.jobs" and value != "1"
                or key == "sweep.collect_only" and value.lower() == "true"
                or key == "hydra.mode" and value.upper() == "MULTIRUN"):
            return False
    return True


def start(env: dict[str, str]) -> None:
    """Start a worker with ``env`` added to this process's environment, to be taken later."""
    global _waiting
    stop()
    _waiting = (_spawn(env), dict(env))


def take(env: dict[str, str]) -> subprocess.Popen:
    """A worker process with ``env``: the one started ahead if it matches and still waits,
    else a fresh one."""
    global _waiting
    if _waiting is not None:
        proc, started_env = _waiting
        _waiting = None
        if started_env == env and proc.poll() is None:
            return proc
        _kill(proc)
    return _spawn(env)


def stop() -> None:
    """Stop the worker started ahead, if it was never taken."""
    global _waiting
    if _waiting is not None:
        _kill(_waiting[0])
        _waiting = None


def _spawn(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate()


def start_for_sweep(argv: list[str]) -> None:
    """At the top of ``python -m bench.sweep``: start the first worker if it will likely be
    used, with the environment a one-at-a-time sweep gives its workers."""
    if not worth_starting(argv):
        return
    from bench.sweep.pool import Placement, visible_gpus

    gpus = visible_gpus()
    start(Placement(True, 1, gpus[0] if gpus else None).env())
    atexit.register(stop)
