"""Deterministic image down-sampling by area averaging (a box filter).

Each output pixel is the mean of the input area it covers, with fractional overlaps weighted,
so 28x28 -> 8x8 keeps all of the image's mass and introduces no aliasing.
"""

from __future__ import annotations

import numpy as np


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] matrix whose row i averages the input span covered by output i."""
    scale = size_in / size_out
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        lo, hi = i * scale, (i + 1) * scale
        # min(): (i + 1) * scale can round to just above size_in.
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), size_in)):
            weights[i, j] = min(hi, j + 1) - max(lo, j)
    return weights / scale


def resize_area(images: np.ndarray, size: int) -> np.ndarray:
    """Resize [N, H, W] images to [N, size, size] float32 by area averaging."""
    _, height, width = images.shape
    rows = area_weights(height, size).astype(np.float32)
    cols = area_weights(width, size).astype(np.float32)
    return np.matmul(np.matmul(rows, images.astype(np.float32)), cols.T)
