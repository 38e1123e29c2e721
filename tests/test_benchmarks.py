"""The speed benchmarks run end to end at a tiny size and write their tables."""

from __future__ import annotations

import pytest

from bench.benchmarks import meta_throughput, update_cost
from bench.records.files import read_parquet
from optimizers.learned.costs import learned_update_cost


def test_update_cost_benchmark_writes_its_table(tmp_path):
    """Adam at a tiny size: a row with its config name, no arm, and the comparison with a
    minimal loop of its own (the harness's timing against the least it could be)."""
    code = update_cost.main(["--optimizers", "adam", "--sizes", "20000", "--repeats", "3",
                             "--out", str(tmp_path)])
    assert code == 0
    [row] = read_parquet(tmp_path / "update_cost.parquet").to_dict("records")
    assert row["optimizer_name"] == "adam" and row["arm"] is None
    assert row["update_time_median_s"] > 0 and row["harness_vs_minimal"] > 0
    assert row["floor_s"] > 0 and row["floor_kind"] in ("bytes", "flops")
    assert row["time_over_floor"] == row["update_time_median_s"] / row["floor_s"]
    assert row["gemm_flops_per_s"] > 0 and row["elementwise_flops_per_s"] > 0
    assert (tmp_path / "update_cost.png").exists()


def test_meta_throughput_benchmark_writes_a_row_per_count_of_tasks(tmp_path):
    """The standard family (one task) at a tiny estimator: a count above the family's size
    times every task, once."""
    code = meta_throughput.main(["--family", "standard", "--tasks-per-step", "1", "3",
                                 "--steps", "3", "--particles", "1", "--truncation", "2",
                                 "--out", str(tmp_path)])
    assert code == 0
    [row] = read_parquet(tmp_path / "meta_throughput.parquet").to_dict("records")
    assert (row["tasks_per_step"], row["family_tasks"], row["timed_steps"]) == (1, 1, 3)
    assert row["outer_steps_per_s"] == pytest.approx(1 / row["step_time_median_s"])
    assert row["inner_steps_per_s"] == pytest.approx(2 * 2 * row["outer_steps_per_s"])
    assert meta_throughput.main(["--family", "nonesuch", "--out", str(tmp_path)]) == 2


RATES = {"gemm_flops_per_s": 1e11, "elementwise_flops_per_s": 2e10}


@pytest.mark.parametrize("name", sorted(p.stem for p in update_cost.CONF.glob("*.yaml")))
def test_every_optimizer_has_a_positive_floor(name):
    """Every optimizer config, hand-designed or learned, has analytic bytes and FLOPs, so its
    floor is defined and positive."""
    for variant in update_cost.variants([name]):
        cost = update_cost.analytic_cost(variant.name, variant.config)
        assert cost is not None and cost.bytes > 0 and cost.flops > 0, variant.label
        floor = update_cost.floor_columns(cost, 10_000_000, 20.0, RATES, median=1.0)
        assert floor["floor_s"] > 0 and floor["floor_kind"] in ("bytes", "flops")
        assert floor["floor_s"] == max(floor["bytes_floor_s"], floor["compute_floor_s"])


def test_a_design_variant_gets_its_own_floor():
    """A wider network costs more FLOPs; more momenta move more bytes; the learned networks
    count as matrix products where they run as such."""
    cost = lambda **kw: learned_update_cost("small_fc_lopt", {"path": "unrolled", **kw})  # noqa: E731
    assert cost(hidden_size=8).flops > cost().flops
    assert cost(momentum_decays=[0.9]).bytes < cost().bytes
    assert cost().matmul_flops == 0
    assert learned_update_cost("small_fc_lopt", {"path": "stacked"}).matmul_flops > 0
    mlp = learned_update_cost("mlp_lopt", {})
    assert mlp.matmul_flops == 2 * (8 * 32 + 32 * 32 + 32 * 2) and mlp.bytes == 15 * 4


def test_update_cost_variants_name_each_path_as_an_arm():
    """small_fc_lopt is benchmarked once per execution path and once per faster design
    option, each labelled and armed."""
    from optimizers.learned.small_fc_lopt import NO_FACTORED, PATHS

    found = update_cost.variants(["small_fc_lopt", "adam"])
    assert [(v.label, v.name, v.arm) for v in found] == [
        *((f"small_fc_lopt/{p}", "small_fc_lopt", {"path": p}) for p in PATHS),
        ("small_fc_lopt/subsampled", "small_fc_lopt", {"normalisation": "subsampled"}),
        ("small_fc_lopt/lagged", "small_fc_lopt", {"normalisation": "lagged"}),
        ("small_fc_lopt/no_factored", "small_fc_lopt", NO_FACTORED),
        ("small_fc_lopt/no_factored_subsampled", "small_fc_lopt",
         {**NO_FACTORED, "normalisation": "subsampled"}),
        ("small_fc_lopt/lean", "small_fc_lopt",
         {**NO_FACTORED, "momentum_decays": [0.9], "hidden_size": 2, "hidden_layers": 1}),
        ("small_fc_lopt/linear", "small_fc_lopt",
         {**NO_FACTORED, "momentum_decays": [0.99], "hidden_layers": 0, "use_param": False}),
        ("small_fc_lopt/linear_subsampled", "small_fc_lopt",
         {**NO_FACTORED, "momentum_decays": [0.99], "hidden_layers": 0, "use_param": False,
          "normalisation": "subsampled"}),
        ("adam", "adam", None)]
    assert [v.config.path for v in found[:len(PATHS)]] == list(PATHS)
    assert found[-7].config.normalisation == "lagged"
    assert not found[-6].config.use_factored and found[-5].config.normalisation == "subsampled"
    assert list(found[-4].config.momentum_decays) == [0.9]
    assert found[-3].config.hidden_layers == 0 and not found[-3].config.use_param
    assert found[-2].config.hidden_layers == 0 and found[-2].config.normalisation == "subsampled"
