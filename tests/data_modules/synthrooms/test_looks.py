"""The two SynthRooms looks (:mod:`data_modules.synthrooms.looks`): the real look differs from the synthetic one in
texture, colour and contrast (the domain gap)."""

from __future__ import annotations

import numpy as np

from data_modules.synthrooms import render_sample


def _colour_histogram(images: np.ndarray, bins: int = 8) -> np.ndarray:
    q = np.minimum((images * bins).astype(int), bins - 1).reshape(-1, 3)
    counts = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins**3)
    return counts / counts.sum()


def test_real_look_differs_from_synthetic():
    synthetic = np.stack([render_sample(11, "test", i, "synthetic")[0]["image"] for i in range(16)])
    real = np.stack([render_sample(11, "test", i, "real")[0]["image"] for i in range(16)])

    def high_frequency(images: np.ndarray) -> float:  # mean |Laplacian| of the grey images
        g = images.mean(axis=-1)
        lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
        return float(np.median(np.abs(lap)))

    assert high_frequency(real) > 5 * high_frequency(synthetic)
    assert 0.5 * np.abs(_colour_histogram(real) - _colour_histogram(synthetic)).sum() > 0.3
    assert synthetic.std() > 1.15 * real.std()  # flat colours under one light vs. textured, lower-contrast photos
