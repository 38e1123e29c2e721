"""JAX's persistent compilation cache (``sweep.compile_cache``): compiled programs are stored on
disk and reused by later processes, so a fresh worker skips most of its compile time.

With the cache on, ``compile_time_s`` of a run whose programs were cached measures loading,
not compiling; rows say whether the cache was on (column ``compile_cache``).
"""

from __future__ import annotations

from pathlib import Path


def enable(folder: str | Path) -> None:
    """Cache every compiled program under ``folder`` (no minimum compile time or size: the
    small programs of small tasks are the ones a sweep compiles over and over)."""
    import jax

    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
