"""Static costs of a compiled function from XLA: FLOPs, bytes accessed, memory analysis."""

from __future__ import annotations

from typing import Any

from bench.measure.loop_traffic import loop_bytes


def _first(analysis: Any) -> dict[str, Any]:
    # Older JAX returns a list with one dict per computation; newer returns the dict.
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return dict(analysis or {})


def compiled_costs(compiled: Any, prefix: str) -> dict[str, float | None]:
    """FLOPs, bytes accessed and argument/output/temporary bytes of an XLA executable, and the
    bytes its top-level loops move (``bench.measure.loop_traffic``)."""
    try:
        cost = _first(compiled.cost_analysis())
    except Exception:  # some backends implement no cost analysis
        cost = {}
    try:
        memory = compiled.memory_analysis()
    except Exception:
        memory = None

    def mem(attr: str) -> int | None:
        value = getattr(memory, attr, None)
        return None if value is None else int(value)

    flops = cost.get("flops")
    accessed = cost.get("bytes accessed")
    return {
        f"{prefix}_flops": None if flops is None else float(flops),
        f"{prefix}_bytes_accessed": None if accessed is None else float(accessed),
        f"{prefix}_argument_bytes": mem("argument_size_in_bytes"),
        f"{prefix}_output_bytes": mem("output_size_in_bytes"),
        f"{prefix}_temp_bytes": mem("temp_size_in_bytes"),
        f"{prefix}_loop_bytes": _loop_bytes(compiled),
    }


def _loop_bytes(compiled: Any) -> int | None:
    try:
        text = compiled.as_text()
    except Exception:  # an executable that cannot print its HLO
        return None
    return loop_bytes(text) if text else None
