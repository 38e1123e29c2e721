"""The tables of measured numbers in docs/ are generated from results/reference/ and current."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench import reference_tables
from bench.reference_tables import BLOCK, DOCS, REFERENCE, TABLES, main, stale_pages


def test_docs_tables_are_current():
    """`make docs` has been run since the reference tables or the generators last changed."""
    stale = stale_pages(DOCS, REFERENCE)
    assert stale == [], f"stale tables in {[p.name for p in stale]}: run `make docs`"


def test_every_generated_table_is_placed_in_the_docs():
    placed = {m.group(1) for page in DOCS.glob("*.md") for m in BLOCK.finditer(page.read_text())}
    assert placed == set(TABLES)


def _with_changed_cell(page: Path, table: str) -> str:
    """The page's text with the first number of the first data row of ``table`` changed."""
    text = page.read_text()
    block = re.search(rf"<!-- table:{table} -->\n.*?<!-- /table:{table} -->", text, re.DOTALL)
    assert block is not None, f"{page.name} has no table {table}"
    row = block.group(0).splitlines()[3]  # marker, header, separator, first row
    changed = re.sub(r"\d", lambda d: str((int(d.group(0)) + 1) % 10), row, count=1)
    assert changed != row
    return text.replace(row, changed, 1)


def test_a_stale_table_is_detected_and_regenerated(tmp_path, capsys):
    original = (DOCS / "benchmarks.md").read_text()
    copy = tmp_path / "benchmarks.md"
    copy.write_text(_with_changed_cell(DOCS / "benchmarks.md", "update_cost"))
    shutil.copy(DOCS / "scores.md", tmp_path / "scores.md")

    assert stale_pages(tmp_path, REFERENCE) == [copy]
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    assert "benchmarks.md: stale" in capsys.readouterr().out
    assert copy.read_text() != original, "--check must not write"

    assert stale_pages(tmp_path, REFERENCE, write=True) == [copy]
    assert copy.read_text() == original
    assert main(["--check", "--docs", str(tmp_path)]) == 0


def test_an_unknown_table_is_an_error(tmp_path):
    (tmp_path / "page.md").write_text("<!-- table:no_such -->\n<!-- /table:no_such -->\n")
    with pytest.raises(ValueError, match="page.md: unknown table 'no_such'"):
        stale_pages(tmp_path, REFERENCE)


def test_cells_are_plain_numbers():
    assert [reference_tables.fmt(v) for v in (0.0, 0.5861, 17.74, 1954.4)] == [
        "0", "0.586", "17.7", "1954"]
    assert reference_tables.fmt(float("nan")) == ""
    assert reference_tables.markdown(["a", "b"], [["1", "2"]], "note") == (
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n\nnote")
