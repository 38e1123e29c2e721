"""Analytic per-parameter costs of the learned optimizers' updates, from their configs.

The least work an update of a large matrix can do, per parameter (float32; per-tensor work such
as an LSTM step or a normalisation scale is spread over many elements and left out):
``bytes``, reading the gradient, the parameter and every per-parameter state buffer once and
writing the parameter and the state once; ``matmul_flops``, the per-parameter network's
multiply-adds (2 FLOPs each) where it runs as matrix products; ``flops``, the elementwise rest
(accumulators, features, normalisation sums, activations, the output and the apply), counting
each add, multiply, divide, square root, exp, log and comparison as one. A design variant gets
its own counts. Sources: each architecture's module docstring for what it computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optimizers.analytic import F32, UpdateCost


def _network(inputs: int, hidden: int, layers: int, outputs: int) -> tuple[int, int]:
    """(multiply-add FLOPs, bias and activation FLOPs) of a per-parameter MLP."""
    sizes = [inputs] + [hidden] * layers + [outputs]
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2 * macs, sum(sizes[1:]) + hidden * layers


OUTPUT_FLOPS = 5  # step = d * exp(m * exp_mult) * step_mult, then p - step


def _small_fc_lopt(config: Any) -> UpdateCost:
    from optimizers.learned import small_fc_lopt as S
    from optimizers.learned.small_fc_features import needs, num_features

    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    need_m, need_r, need_f = needs(config)
    state = n_m * need_m + n_r * need_r  # factored rows and columns, lagged means: per tensor
    features = num_features(config)
    network, activations = _network(features, config.hidden_size, config.hidden_layers, 2)
    accumulators = 3 * n_m * need_m + 4 * n_r * need_r + 4 * n_f * need_f
    # each feature: about three operations to build, two for its normalisation sum (taken
    # over about one element in norm_stride when subsampled)
    sums = 2 / config.norm_stride if config.normalisation == "subsampled" else 2
    elementwise = accumulators + (3 + sums) * features + activations + OUTPUT_FLOPS
    stacked = S.resolve_path(config) == "stacked"
    return UpdateCost(bytes=(3 + 2 * state) * F32,
                      flops=elementwise + (0 if stacked else network),
                      matmul_flops=network if stacked else 0)


def _mlp_lopt(config: Any) -> UpdateCost:
    k = len(config.momentum_decays)
    network, activations = _network(2 + k, config.hidden_size, config.hidden_layers, 2)
    elementwise = 3 * k + 2 * (2 + k) + activations + OUTPUT_FLOPS
    return UpdateCost(bytes=(3 + 2 * k) * F32, flops=elementwise, matmul_flops=network)


def _rnn_mlp_lopt(config: Any) -> UpdateCost:
    k = len(config.decays)
    inputs = config.num_normalised  # the per-tensor context folds into the first layer's bias
    network, activations = _network(inputs, config.hidden_size, config.hidden_layers,
                                    2 + config.from_mlp_size)
    # clip (2), momenta (3k) and second moments (4k), log|p| (2), m * rsqrt(v) and rsqrt(v)
    # (3k), the normalisation sums (2 per input), the from_mlp means (one add per output)
    elementwise = (2 + 10 * k + 2 + 2 * inputs + activations + config.from_mlp_size
                   + OUTPUT_FLOPS)
    return UpdateCost(bytes=(3 + 4 * k) * F32, flops=elementwise, matmul_flops=network)


def _nn_adam(config: Any) -> UpdateCost:
    # clip (2), m (3), v (4), the step (5) and apply (1); the 9 tensor statistics' sums (mean,
    # and squared deviation: 1 + 3 each)
    del config
    return UpdateCost(bytes=7 * F32, flops=15 + 9 * 4)


COSTS = {"small_fc_lopt": _small_fc_lopt, "mlp_lopt": _mlp_lopt,
         "rnn_mlp_lopt": _rnn_mlp_lopt, "nn_adam": _nn_adam}


def learned_update_cost(architecture: str, settings: Mapping[str, Any]) -> UpdateCost:
    """The analytic cost of a learned optimizer's update from its architecture and settings
    (the optimizer config's keys other than ``_target_``, ``architecture``, ``checkpoint``
    and ``seed``)."""
    from optimizers.learned import make_config

    return COSTS[architecture](make_config(architecture, **settings))
