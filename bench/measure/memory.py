"""Memory measurements: exact optimizer-state size, process peak RSS, device peak bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def tree_bytes(tree: Any) -> int:
    """Bytes held by the arrays of a pytree (arrays or ``ShapeDtypeStruct``s)."""
    return int(sum(leaf.size * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)))


def tree_floats(tree: Any) -> int:
    """Number of floating-point scalars in a pytree (step counters and other ints excluded)."""
    return int(
        sum(leaf.size for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating))
    )


def _size(tree: Any) -> int:
    return int(sum(leaf.size for leaf in jax.tree.leaves(tree)))


def state_summary(init: Callable[[Any], Any], param_shapes: Any) -> dict[str, float | None]:
    """Optimizer-state bytes and floats per parameter, counted exactly from the state's shapes.

    Also split by tensor kind: the state an optimizer keeps for the matrices (rank >= 2) per
    matrix parameter, and for the vectors and scalars per vector parameter (None where the
    model has none of that kind). Each is counted by initialising the optimizer on the
    parameters of that kind alone, so factored statistics land on the right side.
    """
    state = jax.eval_shape(init, param_shapes)
    out: dict[str, float | None] = {
        "opt_state_bytes": tree_bytes(state),
        "opt_state_floats_per_param": tree_floats(state) / _size(param_shapes),
    }
    for kind, keep in (("matrix", lambda x: x.ndim >= 2), ("vector", lambda x: x.ndim < 2)):
        part = jax.tree.map(lambda x, keep=keep: x if keep(x) else None, param_shapes)
        count = _size(part)
        out[f"opt_state_floats_per_param_{kind}"] = (
            tree_floats(jax.eval_shape(init, part)) / count if count else None)
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; Linux only.

    Writing 5 to /proc/self/clear_refs does this (Linux >= 4.0, proc(5)). Returns whether the
    reset worked; if not, the peak read later covers the whole process.
    """
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size since start or the last reset."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):
        return None


def device_memory_stats() -> dict[str, int] | None:
    """The first device's allocator statistics, or None where the device keeps none (CPU)."""
    try:
        return jax.devices()[0].memory_stats()
    except Exception:
        return None


def peak_device_bytes() -> int | None:
    """Peak bytes in use on the first device; process-cumulative (the allocator never resets it)."""
    stats = device_memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def nvml_used_bytes() -> int | None:
    """Device memory in use as NVML sees it (all processes), or None without an NVIDIA GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
