"""Pure math of the label-free validators: scores computed on target data without target labels.

Framework convention: a validator's score is HIGHER = BETTER. The functions here return the raw quantity they name
(the caller negates where needed); each docstring says which direction is better. All arithmetic is done in float64
on CPU for determinism.

* :func:`entropy`                    Shannon entropy of each row of a probability matrix.
* :func:`information_maximization`   IM = H(mean p) - mean H(p) (Gomes, Krause & Perona, NeurIPS 2010; SHOT, Liang
  et al., ICML 2020).
* :func:`batch_nuclear_norm`         BNM ``||P||_* / N`` (Cui et al., CVPR 2020).
* :func:`soft_neighborhood_density`  SND (Saito et al., ICCV 2021, "Tune it the right way").
* :func:`dev_risk`                   Deep Embedded Validation risk (You et al., ICML 2019, Algorithm 1 / eq. 5-6).
* :func:`density_ratio_weights`      DEV importance weights from a domain classifier (You et al., ICML 2019).
* :func:`cross_fitted_weights`       the same weights for every source row, each from a classifier that did not see it.
* :func:`hflip_back`                 a prediction on the flipped image, mapped back to the original frame.
* :func:`prediction_disagreement`    per-sample disagreement of two predictions (flip consistency).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from umadapt.pseudo.transforms import hflip_back as flip_to_original

__all__ = [
    "batch_nuclear_norm",
    "cross_fitted_weights",
    "density_ratio_weights",
    "dev_risk",
    "entropy",
    "hflip_back",
    "information_maximization",
    "prediction_disagreement",
    "soft_neighborhood_density",
]

TASKS = ("depth", "segmentation", "normals", "label")
_PROB_CLIP = 1e-6
_SND_CHUNK = 4096  # rows of the similarity matrix held at once


def _probs64(probs: Tensor) -> Tensor:
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"expected non-empty probabilities [N, K], got shape {tuple(probs.shape)}")
    return probs.detach().to(torch.float64)


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy in nats of each row, ``H(p_n) = -sum_k p_nk log p_nk`` with ``0 log 0 = 0``; ``[N, K] -> [N]``
    (float64). Lower = more confident."""
    p = _probs64(probs)
    return -torch.special.xlogy(p, p).sum(dim=1)


def information_maximization(probs: Tensor) -> float:
    """IM ``= H(mean_n p_n) - mean_n H(p_n)``: diversity of the predicted classes minus the mean prediction entropy
    (Gomes et al. 2010; SHOT's objective, Liang et al. 2020). Higher is better."""
    p = _probs64(probs)
    return float(entropy(p.mean(dim=0, keepdim=True))[0] - entropy(p).mean())


def batch_nuclear_norm(probs: Tensor) -> float:
    """BNM ``||P||_* / N`` of the prediction matrix ``P [N, K]`` (Cui et al. 2020). Higher is better.

    The singular values are the square roots of the eigenvalues of the Gram matrix of the smaller side (``P^T P``,
    ``K x K``, when ``N >= K``), in float64, so memory and time stay linear in ``N`` (``N`` up to ~1e6 rows, small
    ``K``). Eigenvalues below rounding level (``max * size * eps``) are set to 0: their square roots would be noise of
    order ``sqrt(eps)``."""
    p = _probs64(probs)
    gram = p.T @ p if p.shape[0] >= p.shape[1] else p @ p.T
    eig = torch.linalg.eigvalsh(gram)
    eig = torch.where(eig > eig.max() * gram.shape[0] * torch.finfo(torch.float64).eps, eig, 0.0)
    return float(eig.sqrt().sum() / p.shape[0])


def soft_neighborhood_density(x: Tensor, temperature: float = 0.05) -> float:
    """SND (Saito et al. 2021): with ``X`` the L2-normalised rows of ``x [N, D]`` and ``S = X X^T`` with the
    diagonal excluded (``-inf``), ``P = softmax(S / temperature, dim=1)``; returns ``mean_i H(P_i)``.

    Higher is better: when the target features form tight clusters each point has many near neighbours of nearly
    equal similarity, so its neighbour distribution is spread out (high entropy); scattered features give peaked
    neighbour distributions (low entropy). Rows are processed in chunks, so memory is ``O(chunk * N)``."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"soft_neighborhood_density needs features [N, D] with N >= 2, got shape {tuple(x.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    feats = x.detach().to(torch.float64)
    feats = feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = feats.shape[0]
    total = feats.new_zeros(())
    for start in range(0, n, _SND_CHUNK):
        rows = torch.arange(start, min(start + _SND_CHUNK, n))
        sim = feats[rows] @ feats.T
        sim[torch.arange(len(rows)), rows] = -math.inf
        total = total + entropy(torch.softmax(sim / temperature, dim=1)).sum()
    return float(total / n)


def dev_risk(losses: Tensor, weights: Tensor) -> float:
    """Deep Embedded Validation risk (You et al. 2019, Algorithm 1, eq. 5-6). Lower is better.

    With the weighted losses ``L = w * l``, the control variate ``eta = -Cov(L, w) / Var(w)`` (both with ddof=1) and
    ``risk = mean(L) + eta * mean(w) - eta``. When ``w`` is constant (``Var(w) <= 1e-12 * mean(w^2)``, which also
    absorbs rounding) ``eta = 0``."""
    if losses.shape != weights.shape or losses.ndim != 1:
        raise ValueError(
            f"losses and weights must be 1-d of the same shape, got {tuple(losses.shape)}, {tuple(weights.shape)}"
        )
    if losses.shape[0] < 2:
        raise ValueError(f"dev_risk needs at least 2 samples, got {losses.shape[0]}")
    loss = losses.detach().to(torch.float64)
    w = weights.detach().to(torch.float64)
    weighted = w * loss
    var_w = w.var(correction=1)
    if var_w <= 1e-12 * (w * w).mean():
        eta = w.new_zeros(())
    else:
        cov = ((weighted - weighted.mean()) * (w - w.mean())).sum() / (w.shape[0] - 1)
        eta = -cov / var_w
    return float(weighted.mean() + eta * w.mean() - eta)


def density_ratio_weights(source_fit: Tensor, target_fit: Tensor, source_eval: Tensor, *, seed: int = 0) -> Tensor:
    """DEV importance weights ``w(x) = p(target|x) / p(source|x) * N_s / N_t`` (You et al. 2019) for the rows
    of ``source_eval``; ``[N_eval]`` float64.

    The domain classifier is scikit-learn's ``LogisticRegression(C=1.0, max_iter=1000, random_state=seed)`` on features
    standardised by a ``StandardScaler`` fitted on the fit set, separating ``source_fit`` (0) from ``target_fit`` (1);
    ``N_s, N_t`` are the fit sets' sizes and ``p(target|x)`` is clipped to ``[1e-6, 1 - 1e-6]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xs = source_fit.detach().to(torch.float64).reshape(len(source_fit), -1).numpy()
    xt = target_fit.detach().to(torch.float64).reshape(len(target_fit), -1).numpy()
    xe = source_eval.detach().to(torch.float64).reshape(len(source_eval), -1).numpy()
    if len(xs) == 0 or len(xt) == 0 or xs.shape[1] != xt.shape[1] or xs.shape[1] != xe.shape[1]:
        raise ValueError(f"need non-empty fit sets with matching features, got {xs.shape}, {xt.shape}, {xe.shape}")
    features = np.concatenate([xs, xt])
    labels = np.concatenate([np.zeros(len(xs)), np.ones(len(xt))])
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(features), labels)
    p_target = np.clip(clf.predict_proba(scaler.transform(xe))[:, 1], _PROB_CLIP, 1.0 - _PROB_CLIP)
    return torch.from_numpy(p_target / (1.0 - p_target) * (len(xs) / len(xt)))


def cross_fitted_weights(source: Tensor, target: Tensor, *, folds: int = 2, seed: int = 0) -> Tensor:
    """:func:`density_ratio_weights` for every row of ``source`` (``[N_source]``, original order), none scored by a
    classifier that saw it: the source and target rows are each split into ``folds`` folds (permutations from
    ``numpy.random.default_rng(seed)``); source fold ``f`` is weighted by a classifier fitted on the other folds."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(source) < 2 * folds or len(target) < 2 * folds:
        raise ValueError(
            f"cross_fitted_weights needs at least {2 * folds} source and target rows for {folds} folds, "
            f"got {len(source)} and {len(target)}"
        )
    rng = np.random.default_rng(seed)
    src_folds = np.array_split(rng.permutation(len(source)), folds)
    tgt_folds = np.array_split(rng.permutation(len(target)), folds)
    out = torch.empty(len(source), dtype=torch.float64)
    for f in range(folds):
        src_fit = torch.from_numpy(np.concatenate([idx for g, idx in enumerate(src_folds) if g != f]))
        tgt_fit = torch.from_numpy(np.concatenate([idx for g, idx in enumerate(tgt_folds) if g != f]))
        held = torch.from_numpy(src_folds[f])
        out[held] = density_ratio_weights(source[src_fit], target[tgt_fit], source[held], seed=seed)
    return out


def _check_task(task: str, *tensors: Tensor) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    ndim = 2 if task == "label" else 4
    for t in tensors:
        if t.ndim != ndim:
            raise ValueError(f"{task} predictions must have {ndim} dims, got shape {tuple(t.shape)}")
    if task == "normals" and tensors[0].shape[1] != 3:
        raise ValueError(f"normals must have 3 channels, got shape {tuple(tensors[0].shape)}")


def hflip_back(task: str, prediction: Tensor) -> Tensor:
    """Map a prediction made on the horizontally flipped image back to the original frame (same dtype), after
    checking its shape: :func:`umadapt.pseudo.transforms.hflip_back` (dense maps flipped along the width, normals'
    x negated; ``label [N, C]`` unchanged)."""
    _check_task(task, prediction)
    return flip_to_original(task, prediction)


def prediction_disagreement(task: str, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample disagreement ``[N]`` (float64, unitless, 0 = identical) of two predictions of the same images in the
    same frame.

    * ``depth`` (positive metres): mean over pixels of ``|log a - log b|`` (depths clamped at 1e-6).
    * ``normals``: mean over pixels of ``angle(a, b) / pi`` (cos clamped to [-1, 1]); pixels where either vector's
      norm is below 0.5 are ignored, and a sample without valid pixels gets 0.
    * ``segmentation`` / ``label`` (class probabilities on dim 1): total variation ``0.5 * sum_k |a_k - b_k|``,
      averaged over pixels for segmentation."""
    _check_task(task, a, b)
    if a.shape != b.shape:
        raise ValueError(f"predictions must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    if task == "depth":
        return (a.clamp_min(1e-6).log() - b.clamp_min(1e-6).log()).abs().flatten(1).mean(dim=1)
    if task == "normals":
        norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
        valid = (norm_a >= 0.5) & (norm_b >= 0.5)
        cos = (a * b).sum(dim=1) / (norm_a * norm_b).clamp_min(1e-12)
        angle = torch.where(valid, cos.clamp(-1.0, 1.0).acos() / math.pi, 0.0).flatten(1).sum(dim=1)
        return angle / valid.flatten(1).sum(dim=1).clamp_min(1)
    tv = 0.5 * (a - b).abs().sum(dim=1)
    return tv if task == "label" else tv.flatten(1).mean(dim=1)
