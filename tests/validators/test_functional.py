"""The validators' math (:mod:`umadapt.validators.functional`) against direct NumPy formulas, plus the direction of
each score (higher = better, except the DEV risk) and the flip bookkeeping of the consistency validators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umadapt.validators.functional import (
    batch_nuclear_norm,
    cross_fitted_weights,
    density_ratio_weights,
    dev_risk,
    entropy,
    hflip_back,
    information_maximization,
    prediction_disagreement,
    soft_neighborhood_density,
)


def _random_probs(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(3.0 * torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), dim=1)


def _np_entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _one_hot(classes: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), k).to(torch.float64)


# --- entropy, IM, BNM -------------------------------------------------------------------------------------------------


def test_entropy_matches_numpy_and_handles_zeros():
    p = _random_probs(50, 6)
    p[0] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    got = entropy(p)
    assert got.shape == (50,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _np_entropy(p.double().numpy()), rtol=1e-12, atol=1e-15)
    assert got[0] == 0.0


def test_entropy_lower_for_confident_than_uniform():
    confident = entropy(_one_hot([0, 1, 2], 4))
    uniform = entropy(torch.full((3, 4), 0.25))
    assert torch.all(confident < uniform)
    np.testing.assert_allclose(uniform.numpy(), math.log(4))


def test_information_maximization_matches_numpy():
    p = _random_probs(40, 5).double().numpy()
    expected = _np_entropy(p.mean(axis=0)) - _np_entropy(p).mean()
    assert information_maximization(torch.from_numpy(p)) == pytest.approx(expected, rel=1e-12)


def test_information_maximization_prefers_diverse_over_collapsed():
    diverse = _one_hot([0, 1, 2, 3] * 5, 4)
    collapsed = _one_hot([2] * 20, 4)
    assert information_maximization(diverse) == pytest.approx(math.log(4))
    assert information_maximization(collapsed) == pytest.approx(0.0)
    assert information_maximization(diverse) > information_maximization(collapsed)


@pytest.mark.parametrize(("n", "k"), [(30, 4), (5000, 7), (3, 10)])
def test_batch_nuclear_norm_matches_svd(n, k):
    p = _random_probs(n, k, seed=n).double()
    expected = np.linalg.svd(p.numpy(), compute_uv=False).sum() / n
    assert batch_nuclear_norm(p) == pytest.approx(expected, rel=1e-9)


def test_batch_nuclear_norm_prefers_diverse_over_collapsed():
    diverse = _one_hot([0, 1, 2, 3] * 5, 4)
    collapsed = _one_hot([1] * 20, 4)
    # sigma of diverse one-hots: sqrt(5) four times -> 4 sqrt(5) / 20; collapsed: sqrt(20) / 20
    assert batch_nuclear_norm(diverse) == pytest.approx(4 * math.sqrt(5) / 20, rel=1e-14)
    assert batch_nuclear_norm(collapsed) == pytest.approx(math.sqrt(20) / 20, rel=1e-14)  # zero sigmas stay 0
    assert batch_nuclear_norm(diverse) > batch_nuclear_norm(collapsed)


@pytest.mark.parametrize("bad", [torch.ones(5), torch.ones(0, 3), torch.ones(2, 3, 4)])
def test_probability_functions_reject_bad_shapes(bad):
    for fn in (entropy, information_maximization, batch_nuclear_norm):
        with pytest.raises(ValueError, match=r"\[N, K\]"):
            fn(bad)


# --- SND --------------------------------------------------------------------------------------------------------------


def _np_snd(x: np.ndarray, temperature: float) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    entropies = []
    for i in range(len(x)):
        sims = np.array([x[i] @ x[j] for j in range(len(x)) if j != i]) / temperature
        p = np.exp(sims - sims.max())
        p /= p.sum()
        entropies.append(_np_entropy(p))
    return float(np.mean(entropies))


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_snd_matches_numpy_loop(temperature):
    x = torch.randn(25, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert soft_neighborhood_density(x, temperature) == pytest.approx(_np_snd(x.numpy(), temperature), rel=1e-10)


def test_snd_chunked_rows_match_numpy(monkeypatch):
    import umadapt.validators.functional as functional

    monkeypatch.setattr(functional, "_SND_CHUNK", 7)  # several chunks, the last one partial
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert soft_neighborhood_density(x) == pytest.approx(_np_snd(x.numpy(), 0.05), rel=1e-10)


def test_snd_higher_for_tight_clusters_than_scattered_points():
    """Saito et al.: higher SND is better. Two tight clusters of 100 give each point ~99 equally close neighbours
    (entropy ~ log 99); scattered points have a few dominant neighbours (low entropy)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 16, generator=g)
    clustered = torch.cat([c + 0.05 * torch.randn(100, 16, generator=g) for c in centres])
    scattered = torch.randn(200, 16, generator=g)
    snd_clustered = soft_neighborhood_density(clustered)
    assert snd_clustered == pytest.approx(math.log(99), abs=0.05)
    assert snd_clustered > soft_neighborhood_density(scattered) + 1.0


def test_snd_rejects_single_row():
    with pytest.raises(ValueError, match="N >= 2"):
        soft_neighborhood_density(torch.randn(1, 4))


# --- DEV --------------------------------------------------------------------------------------------------------------


def test_dev_risk_matches_numpy_formula():
    rng = np.random.default_rng(0)
    loss, w = rng.gamma(2.0, size=64), rng.lognormal(size=64)
    weighted = w * loss
    eta = -np.cov(weighted, w, ddof=1)[0, 1] / np.var(w, ddof=1)
    expected = weighted.mean() + eta * w.mean() - eta
    assert dev_risk(torch.from_numpy(loss), torch.from_numpy(w)) == pytest.approx(expected, rel=1e-12)


def test_dev_risk_with_constant_weights_is_the_mean_loss():
    loss = torch.rand(33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert dev_risk(loss, torch.ones(33)) == pytest.approx(float(loss.mean()), rel=1e-12)
    assert dev_risk(loss, torch.full((33,), 0.7, dtype=torch.float64)) == pytest.approx(
        0.7 * float(loss.mean()), rel=1e-12
    )


@pytest.mark.parametrize(("loss", "w"), [(torch.ones(3), torch.ones(4)), (torch.ones(1), torch.ones(1))])
def test_dev_risk_rejects_bad_inputs(loss, w):
    with pytest.raises(ValueError):
        dev_risk(loss, w)


def _shifted_gaussians(n: int, shift: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n, 3, generator=g, dtype=torch.float64)
    target = torch.randn(n, 3, generator=g, dtype=torch.float64)
    target[:, 0] += shift
    return source, target


def test_density_ratio_weights_match_the_gaussian_density_ratio():
    """Source N(0, I), target N(mu e_0, I), equal sizes: the true ratio is exp(mu x_0 - mu^2 / 2), which a logistic
    regression can represent exactly; with 20000 rows a side it should be recovered closely."""
    source, target = _shifted_gaussians(20000, 1.0)
    probe = torch.zeros(5, 3, dtype=torch.float64)
    probe[:, 0] = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0])
    w = density_ratio_weights(source, target, probe)
    assert w.shape == (5,) and w.dtype == torch.float64
    np.testing.assert_allclose(w.log().numpy(), probe[:, 0].numpy() - 0.5, atol=0.1)


def test_density_ratio_weights_scale_with_the_fit_set_sizes():
    """The intercept's gradient is zero at the optimum (it is not penalised): sum of p(target|x) over the fit rows
    equals N_t; and the weights carry the N_s / N_t prior correction."""
    source, target = _shifted_gaussians(600, 0.5)
    target = target[:200]
    p = density_ratio_weights(source, target, torch.cat([source, target]))  # = p / (1 - p) * 600 / 200
    odds = p / 3.0
    assert float((odds / (1 + odds)).sum()) == pytest.approx(200.0, rel=1e-3)


def test_density_ratio_weights_favour_target_like_source_rows():
    source, target = _shifted_gaussians(500, 2.0)
    probe = torch.tensor([[-2.0, 0, 0], [0.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64)
    w = density_ratio_weights(source, target, probe)
    assert w[0] < w[1] < w[2]


def test_cross_fitted_weights_keep_row_order():
    source, target = _shifted_gaussians(200, 2.0, seed=3)
    source[37] = torch.tensor([6.0, 0.0, 0.0], dtype=torch.float64)  # far on the target side
    w = cross_fitted_weights(source, target, folds=3)
    assert w.shape == (200,)
    assert int(w.argmax()) == 37


def test_cross_fitted_weights_score_each_fold_with_the_other_folds():
    source, target = _shifted_gaussians(40, 1.0, seed=4)
    w = cross_fitted_weights(source, target, folds=2, seed=5)
    rng = np.random.default_rng(5)
    src = np.array_split(rng.permutation(40), 2)
    tgt = np.array_split(rng.permutation(40), 2)
    for f in range(2):
        expected = density_ratio_weights(source[src[1 - f]], target[tgt[1 - f]], source[src[f]], seed=5)
        torch.testing.assert_close(w[src[f]], expected, rtol=0, atol=0)


@pytest.mark.parametrize(("n_source", "n_target", "folds"), [(3, 10, 2), (10, 5, 3), (10, 10, 1)])
def test_cross_fitted_weights_reject_too_few_rows(n_source, n_target, folds):
    with pytest.raises(ValueError):
        cross_fitted_weights(torch.randn(n_source, 2), torch.randn(n_target, 2), folds=folds)


# --- flip consistency -------------------------------------------------------------------------------------------------


def _unit_normals(seed: int = 0) -> torch.Tensor:
    n = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(seed))
    return n / n.norm(dim=1, keepdim=True)


def test_hflip_back_restores_flipped_normals():
    normals = _unit_normals()
    flipped = normals.flip(-1).clone()
    flipped[:, 0] = 0.0 - flipped[:, 0]  # what data_modules/augment.py does on a horizontal flip
    assert torch.equal(hflip_back("normals", flipped), normals)
    assert not torch.allclose(flipped.flip(-1), normals)  # flipping the width alone is not enough


@pytest.mark.parametrize(("task", "shape"), [("depth", (2, 1, 4, 6)), ("segmentation", (2, 5, 4, 6))])
def test_hflip_back_flips_dense_maps(task, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hflip_back(task, x), x.flip(-1))
    assert torch.equal(hflip_back(task, hflip_back(task, x)), x)


def test_hflip_back_leaves_labels_alone():
    x = torch.rand(4, 3)
    assert torch.equal(hflip_back("label", x), x)


def test_hflip_back_rejects_unknown_task():
    with pytest.raises(ValueError, match="depth, segmentation, normals, label"):
        hflip_back("keypoints", torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize(
    ("task", "x"),
    [
        ("depth", torch.rand(3, 1, 4, 5) + 0.1),
        ("normals", _unit_normals()),
        ("segmentation", torch.softmax(torch.randn(3, 4, 4, 5), dim=1)),
        ("label", torch.softmax(torch.randn(3, 4), dim=1)),
    ],
)
def test_prediction_disagreement_is_zero_for_identical_inputs(task, x):
    got = prediction_disagreement(task, x, x.clone())
    assert got.shape == (x.shape[0],) and got.dtype == torch.float64
    torch.testing.assert_close(got, torch.zeros(x.shape[0], dtype=torch.float64), rtol=0, atol=1e-7)


def test_prediction_disagreement_values():
    depth_a = torch.full((1, 1, 2, 2), 2.0)
    depth_b = torch.tensor([[[[2.0, 4.0], [1.0, 2.0]]]])
    assert float(prediction_disagreement("depth", depth_a, depth_b)[0]) == pytest.approx(math.log(2) / 2)

    normals = _unit_normals()
    assert prediction_disagreement("normals", normals, -normals).tolist() == pytest.approx([1.0, 1.0])
    orthogonal = torch.zeros(1, 3, 1, 2)
    orthogonal[0, 0], other = 1.0, torch.zeros(1, 3, 1, 2)
    other[0, 1] = 1.0
    assert float(prediction_disagreement("normals", orthogonal, other)[0]) == pytest.approx(0.5)

    seg_a = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])  # [1, 2, 1, 2]
    seg_b = torch.tensor([[[[0.0, 0.5]], [[1.0, 0.5]]]])
    assert float(prediction_disagreement("segmentation", seg_a, seg_b)[0]) == pytest.approx(0.5)
    labels = prediction_disagreement("label", torch.tensor([[0.7, 0.3], [1.0, 0.0]]), torch.tensor([[0.5, 0.5]] * 2))
    assert labels.tolist() == pytest.approx([0.2, 0.5])


def test_prediction_disagreement_ignores_invalid_normals():
    a, b = _unit_normals(0), _unit_normals(1)
    b[0, :, 0, 0] = -a[0, :, 0, 0]  # would count 1.0 here...
    a[0, :, 0, 0] = 0.0  # ...but this pixel of `a` is invalid
    valid = torch.ones(2, 5, 7, dtype=torch.bool)
    valid[0, 0, 0] = False
    angle = (a * b).sum(dim=1).clamp(-1, 1).acos() / math.pi
    expected = torch.stack([angle[i][valid[i]].mean() for i in range(2)]).double()
    torch.testing.assert_close(prediction_disagreement("normals", a, b), expected, rtol=1e-6, atol=1e-7)
    none_valid = torch.zeros(1, 3, 2, 2)
    assert prediction_disagreement("normals", none_valid, none_valid).tolist() == [0.0]


@pytest.mark.parametrize(
    ("task", "a", "b"),
    [
        ("keypoints", torch.rand(2, 3), torch.rand(2, 3)),
        ("depth", torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 5)),
        ("label", torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)),
        ("normals", torch.rand(2, 2, 4, 4), torch.rand(2, 2, 4, 4)),
    ],
)
def test_prediction_disagreement_rejects_bad_inputs(task, a, b):
    with pytest.raises(ValueError):
        prediction_disagreement(task, a, b)
