"""The code version that is part of every run's identity (``sweep.code_version``).

A result is reused only by a run of the same config under the same code. Three policies:

- ``source`` (default): a hash of the Python files of the folders that compute results: the
  ``tasks`` and ``optimizers`` packages and the harness's measuring and training code
  (``RESULT_FOLDERS``; every record column is written there, which a test checks). Editing any
  of them reruns every run; committing, editing docs, tests, configs' comments, figures or the
  sweep's own plumbing does not. (Config values are part of the identity anyway.)
- ``commit``: the git commit, plus a hash of the uncommitted diff when the tree is dirty:
  strictest; any commit, even to docs, reruns everything.
- ``none``: no code version; results are reused across any code change (the ids of runs
  recorded before code versions existed).

Checkpoint files of learned optimizers are hashed into the identity on their own (a run's
``checkpoint_digest``), as data files are (``data_fingerprint``).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICIES = ("source", "commit", "none")
# What computes a run's numbers: whole folders, so that a new module is covered without a list.
RESULT_FOLDERS = ("tasks", "optimizers", "bench/measure", "bench/train")


def source_files(root: Path = REPO) -> list[Path]:
    """The Python files under ``RESULT_FOLDERS``, in a stable order."""
    return [path for folder in RESULT_FOLDERS for path in sorted((root / folder).rglob("*.py"))]


def source_hash(root: Path = REPO) -> str:
    """``src-`` and 12 hex digits of a hash over the result sources' paths and bytes."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return "src-" + digest.hexdigest()[:12]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=10,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode(errors="replace")


def commit_version() -> str:
    """The git commit, with ``-dirty-<hash of the diff>`` when tracked files have changes."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        raise ValueError("sweep.code_version=commit: not a git checkout (use 'source')")
    diff = _git("diff", "HEAD") or ""
    suffix = f"-dirty-{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else ""
    return head.strip()[:12] + suffix


@functools.cache
def code_version(policy: str) -> str | None:
    """The code version under ``policy`` (see the module docstring); None for ``none``."""
    if policy == "source":
        return source_hash()
    if policy == "commit":
        return commit_version()
    if policy == "none":
        return None
    raise ValueError(f"sweep.code_version={policy!r}: expected one of {', '.join(POLICIES)}")
