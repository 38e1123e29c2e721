"""The speed benchmarks run end to end at a tiny size and write their tables."""

from __future__ import annotations

from bench.benchmarks import update_cost
from bench.records.files import read_parquet


def test_update_cost_benchmark_writes_its_table(tmp_path):
    """Adam at a tiny size: a row with its config name, no arm, and the comparison with a
    minimal loop of its own (the harness's timing against the least it could be)."""
    code = update_cost.main(["--optimizers", "adam", "--sizes", "20000", "--repeats", "3",
                             "--out", str(tmp_path)])
    assert code == 0
    [row] = read_parquet(tmp_path / "update_cost.parquet").to_dict("records")
    assert row["optimizer_name"] == "adam" and row["arm"] is None
    assert row["update_time_median_s"] > 0 and row["harness_vs_minimal"] > 0
    assert (tmp_path / "update_cost.png").exists()


def test_update_cost_variants_name_each_path_as_an_arm():
    """small_fc_lopt is benchmarked once per execution path, each labelled and armed."""
    from optimizers.learned.small_fc_lopt import PATHS

    found = update_cost.variants(["small_fc_lopt", "adam"])
    assert [(v.label, v.name, v.arm) for v in found] == [
        *((f"small_fc_lopt/{p}", "small_fc_lopt", {"path": p}) for p in PATHS),
        ("adam", "adam", None)]
    assert [v.config.path for v in found[:-1]] == list(PATHS)
