"""The shape of the code: no import cycles, the library never imports the harness, every record
column is written inside the folders the code version hashes, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.sweep.code_version import RESULT_FOLDERS
from tests.conftest import REPO_ROOT

PACKAGES = ("bench", "optimizers", "tasks")
LIBRARY = ("optimizers", "tasks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {_module_name(p): p for package in PACKAGES for p in sorted(
        (root / package).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions (a lazy import is
    still a dependency): ``from a.b import c`` counts ``a.b.c`` where that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles_among_the_project_modules():
    cycle = find_cycle(import_graph(project_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    """The check can fail: a cycle of three modules is found, a chain is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_library_never_imports_the_harness():
    """optimizers/ and tasks/ import nothing of bench/, not even lazily."""
    modules = project_modules()
    upward = {name: sorted(i for i in imports_of(path, modules) if i.split(".")[0] == "bench")
              for name, path in modules.items() if name.split(".")[0] in LIBRARY}
    assert not {k: v for k, v in upward.items() if v}


def test_upward_import_is_detected(tmp_path):
    """The import scanner sees a lazy ``from bench... import`` inside a function."""
    source = tmp_path / "lib.py"
    source.write_text("def f():\n    from bench.records.store import RecordStore\n")
    assert imports_of(source, {"bench.records.store": source}) == {"bench.records.store"}


def test_every_module_is_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in project_modules().items()}
    assert {k: v for k, v in sizes.items() if v > 420} == {}


def _row_keys_stored(path: Path) -> set[str]:
    """String keys ``path`` stores into dicts: dict displays, ``x["k"] = ...``, and keyword
    arguments of ``.update(...)``, ``.assign(...)`` and ``dict(...)``."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys
                        if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                keys.add(node.slice.value)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("update", "assign", "dict"):
                keys.update(k.arg for k in node.keywords if k.arg)
    return keys


# Modules that handle records import one of these; the others (benchmarks, analysis, figures)
# build tables of their own, never records.
RECORD_MODULES = ("bench.records.store", "bench.records.schema", "bench.train.record")


@pytest.fixture(scope="module")
def record_columns(synthetic_task) -> set[str]:
    """The columns of a real record: a short run of the synthetic task through the sweep's
    own row builder."""
    from omegaconf import OmegaConf

    from bench.train.record import Where, run_work
    from bench.train.spec import RunSpec
    from optimizers import build_optimizer
    from tests.conftest import ADAM, CONF_DIR, TINY_SETTINGS

    config = OmegaConf.create({"optimizer": ADAM, "run": {**TINY_SETTINGS, "timing": False},
                               "task": OmegaConf.load(CONF_DIR / "task" / "synthetic.yaml"),
                               "seed": 0})
    spec = RunSpec("adam", "synthetic", 0, (), config, "adam")
    [(row, _)] = run_work([spec], "unit", Where(), "auto", lambda _: synthetic_task,
                          build_optimizer)
    assert row["status"] == "ok", row.get("error")
    return set(row)


def test_record_columns_are_written_only_inside_the_hashed_folders(record_columns):
    """No module that handles records outside the folders the code version hashes stores a
    record column, so an edit that changes a number in a record always changes the run id.
    The sweep fills in only where a run ran (``Where``, declared in the hashed code)."""
    import dataclasses

    from bench.train.record import Where

    modules = project_modules()
    hashed = tuple(REPO_ROOT / folder for folder in RESULT_FOLDERS)
    outside = {name: path for name, path in modules.items()
               if name.startswith("bench") and not any(path.is_relative_to(h) for h in hashed)
               and imports_of(path, modules) & set(RECORD_MODULES)}
    assert {"bench.sweep.execute", "bench.sweep.worker"} <= set(outside)
    assert "bench.train.record" not in outside
    # The store stamps each curve row with its run's id, copied from the row.
    context = {f.name for f in dataclasses.fields(Where)} | {"run_id"}
    writes = {name: sorted((_row_keys_stored(path) & record_columns) - context)
              for name, path in outside.items()}
    assert {k: v for k, v in writes.items() if v} == {}


def test_stored_key_scanner_sees_a_column_write(tmp_path):
    """The scanner catches the shapes a row is extended with."""
    source = tmp_path / "m.py"
    source.write_text("row['throughput_steps_per_s'] = 1\nrow.update(status='ok')\n"
                      "x = {'error': None}\n")
    assert _row_keys_stored(source) == {"throughput_steps_per_s", "status", "error"}
