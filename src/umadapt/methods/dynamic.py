"""Controllable dynamic multi-task architectures (DYMU: Raychaudhuri, Suh, Schulter, Yu, Faraki, Roy-Chowdhury &
Chandraker, CVPR 2022, arXiv 2203.14949).

At inference a user gives a task preference ``r`` (on the simplex, one weight per task) and a compute budget
``c`` in ``[0, 1]``. The network then changes which blocks the tasks share (a tree over the anchor's streams,
:mod:`umadapt.nn.dynamic`) and modulates its weights, without retraining. Training has three disentangled
stages (``stage``), chained by ``init_checkpoint``:

1. ``anchor``: the ``N`` single-task streams (:class:`~umadapt.nn.TreeEncoder`, separate tree) with their heads,
   trained on ``Σ_t L_t``.
2. ``edges``: the anchor goes on training with the edge hypernetwork, as a weight-sharing supernet over the
   sampled trees (``experiments/dynamic/edges.yaml`` gives it a tenth of the hypernetwork's learning rate). The
   **task affinity** between streams is measured once when the stage starts
   (representation similarity analysis, as in Vandenhende et al.'s branched multi-task networks; see
   :func:`task_affinity`). Each batch samples ``r ~ Dir(α)`` and ``c ~ U(0, 1)``. The **edge hypernetwork**
   ``h(r, c)`` gives parent logits, relaxed by straight-through Gumbel-softmax, and is trained on::

       Σ_t r_t L_t  +  λ_b · L_branch(r, c)  +  λ_c · |Ĉ(r, c) - c|

   ``L_branch`` (:func:`branching_regularizer`) splits the tasks by ``r`` into active and inactive ones. Active
   tasks keep their own stream (the active term, weighted by ``c``). Inactive tasks are pulled onto the stream of
   their most affine active task (the inactive term, weighted by ``1 - c``). ``Ĉ`` is the sampled tree's
   normalised compute (:func:`~umadapt.nn.dynamic.relaxed_usage`), so the compute term ties the tree's cost to the
   budget.
3. ``weights``: the anchor and the edge hypernetwork are frozen. The tree is the argmax for each sampled ``(r, c)``.
   The **weight hypernetwork** ``h̄(r, c)`` (:class:`~umadapt.nn.WeightHypernet`, a channel-wise modulation of
   every anchor node) is trained on ``Σ_t r_t L_t``.

Choices where the paper could not be checked here (only its abstract and summaries were reachable, not the full
text):

- The anchor trains during stage ``edges`` and is frozen only for ``weights`` (the patent application of the
  method, US 2023/0196122, names the anchor as fixed only while the weight hypernetwork trains). With the anchor
  frozen in ``edges`` too (``train_anchor: false``), one SynthRooms calibration run (seed 0) gave trees whose
  shared tasks read streams trained for another task. Their quality fell far (segmentation mIoU 0.27 against
  0.72 when a depth-preferring request shared everything); the weight hypernetwork recovered it only partly, to
  0.51.
- Consumers at every level pick a parent, the heads included, so budget 0 reaches full hard sharing.
- A task is active when ``r_t >= active_threshold``, by default ``1/N``. At least one task is always active.
- The regularizer's terms are weighted by ``c`` and ``1 - c``.
- The compute term is ``|Ĉ - c|``, where ``Ĉ`` is the compute of the sampled tree (straight-through). The soft
  usage of the parent probabilities underestimated the argmax tree's compute badly (0.26 against 1.0 at the
  start of a SynthRooms run). The term is absolute, not squared: a squared term barely pushes once ``Ĉ`` is near
  ``c``.
- The weight modulation is FiLM on the block outputs.
- Affinity is the Spearman correlation of the streams' representation dissimilarity matrices, averaged over the 4
  depths.

**Baselines from the same class.** ``tree: shared`` with ``train_anchor: true`` and ``stage: weights`` is a
weights-only hypernetwork over a fixed hard-sharing network (Pareto HyperNetworks, Navon et al. 2021, with FiLM
modulation instead of generating every weight). ``tree: separate`` is the same over the anchor's streams.

**Inference.** ``preference`` and ``budget`` say what validation, test and predict run. ``predict`` prints the
chosen tree and its MACs, and the prediction writer stores them in ``request.json``. :meth:`describe_request`
gives the tree as text for any ``(r, c)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from umadapt.checkpoints import load_partial_state
from umadapt.errors import ConfigError
from umadapt.methods.base import METRIC_NAMES, MultiTaskModel
from umadapt.methods.checks import check_non_negative
from umadapt.metrics import spearman
from umadapt.nn.dynamic import (
    EdgeHypernet,
    Tree,
    TreeEncoder,
    WeightHypernet,
    check_request,
    normalized_compute,
    relaxed_parents,
    relaxed_usage,
)
from umadapt.nn.freeze import train_only
from umadapt.weighting import FixedWeighting

__all__ = ["ControllableMultiTask", "branching_regularizer", "task_affinity"]

STAGES = ("anchor", "edges", "weights")
TREES = ("learned", "shared", "separate")


def task_affinity(features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Affinity ``[N, N]`` between streams by representation similarity analysis (Vandenhende et al., "Branched
    Multi-Task Networks", BMVC 2020, Sec. 3.2).

    ``features[j][d]`` holds stream ``j``'s depth-``d`` features on the same ``K`` images, ``[K, ...]``. At each
    depth, each stream's representation dissimilarity matrix (RDM) is ``1 - Pearson`` between the ``K`` images'
    flattened features. The affinity of two streams is the Spearman correlation of their RDMs' upper triangles,
    averaged over depths."""
    num, depths = len(features), len(features[0])
    affinity = torch.zeros(num, num, dtype=torch.float64)
    for d in range(depths):
        rdms = []
        for j in range(num):
            x = features[j][d].flatten(1).double()
            x = x - x.mean(dim=1, keepdim=True)
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            rdm = 1.0 - x @ x.T
            upper = torch.triu_indices(rdm.shape[0], rdm.shape[0], offset=1)
            rdms.append(rdm[upper[0], upper[1]].numpy())
        for i in range(num):
            for j in range(num):
                affinity[i, j] += spearman(rdms[i], rdms[j]) / depths
    return affinity.float()


def branching_regularizer(
    logits: torch.Tensor, preference: torch.Tensor, budget: torch.Tensor, affinity: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c · L_active + (1 - c) · L_inactive, L_active, L_inactive)`` for parent logits ``[D, N, N]``.

    A task ``t`` is active when ``r_t >= threshold``, and the most preferred task always is. ``L_active`` is the
    mean ``-log p`` of every active task's consumers choosing their own stream. ``L_inactive`` is the mean
    ``-log p`` of every inactive task's consumers choosing the stream of its most affine active task (``affinity``
    ``[N, N]``); it is 0 when every task is active."""
    log_p = logits.log_softmax(dim=-1)
    active = preference >= threshold
    active[preference.argmax()] = True
    own = log_p.diagonal(dim1=1, dim2=2)  # [D, N]: consumer j picks stream j
    l_active = -own[:, active].mean()
    inactive = (~active).nonzero().flatten()
    if inactive.numel():
        scores = affinity.to(log_p.dtype).clone()
        scores[:, ~active] = float("-inf")
        partner = scores[inactive].argmax(dim=1)
        l_inactive = -log_p[:, inactive, partner].mean()
    else:
        l_inactive = log_p.new_zeros(())
    budget = budget.to(log_p.dtype)
    return budget * l_active + (1.0 - budget) * l_inactive, l_active, l_inactive


class ControllableMultiTask(MultiTaskModel):
    """A multi-task network controlled at inference by a task preference and a compute budget (DYMU; see the
    module docstring).

    Args (besides those of :class:`~umadapt.methods.base.MultiTaskModel`; ``encoder`` must be a
    :class:`~umadapt.nn.TreeEncoder`):
        stage: ``anchor``, ``edges`` or ``weights``: what this run trains.
        preference: ``r`` for validation, test and predict: one non-negative weight per task, in ``data.tasks``
            order (normalised to sum 1). Default: uniform.
        budget: ``c`` in ``[0, 1]`` for validation, test and predict. Default 1.
        init_checkpoint: ``last.ckpt`` of the previous stage: the anchor for ``edges``, and the ``edges`` run for
            ``weights`` (anchor, edge hypernetwork, affinity). It is read when the fit starts, unless the run
            resumes its own checkpoint.
        tree: ``learned`` (the edge hypernetwork's trees), or a fixed ``shared`` / ``separate`` tree for the
            weights-only baselines.
        train_anchor: also train the streams and heads; default: in ``anchor`` and ``edges``, not in ``weights``.
            Set it in ``weights`` for the weights-only hypernetwork baseline, which learns its shared network and its
            hypernetwork together.
        branching_weight: ``λ_b``.
        compute_weight: ``λ_c``.
        active_threshold: preference from which a task is active; default ``1/N``.
        temperature: Gumbel-softmax temperature of the parent choices.
        dirichlet_alpha: concentration of the sampled preferences (1: uniform on the simplex).
        hypernet_hidden: width of both hypernetworks' MLPs.
        anchor_bias: initial logit bonus of the anchor's own-stream choice (:class:`~umadapt.nn.EdgeHypernet`).
        affinity_images: source training images used to measure the task affinity.
        train_preference: train on this fixed preference instead of sampling one per batch (normalised to sum 1).
            With ``stage: anchor`` the loss is ``Σ_t N r_t L_t``, so ``tree: shared`` with it is hard parameter
            sharing trained with the preference as loss weights (a baseline).
    """

    inference_controls = ("preference", "budget")
    """Arguments that ``validate``/``test``/``predict --ckpt_path`` take from the command line, not the checkpoint."""

    def __init__(
        self,
        stage: str = "anchor",
        preference: list[float] | None = None,
        budget: float | None = None,
        init_checkpoint: str | None = None,
        tree: str = "learned",
        train_anchor: bool | None = None,
        branching_weight: float = 1.0,
        compute_weight: float = 1.0,
        active_threshold: float | None = None,
        temperature: float = 1.0,
        dirichlet_alpha: float = 1.0,
        hypernet_hidden: int = 64,
        anchor_bias: float = 1.0,
        affinity_images: int = 64,
        train_preference: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        image_size = kwargs.get("image_size") or (64, 64)
        if not isinstance(self.encoder, TreeEncoder):
            raise ConfigError(
                f"ControllableMultiTask needs model.init_args.encoder to be umadapt.nn.TreeEncoder (the anchor's "
                f"streams), got {type(self.encoder).__name__}."
            )
        if stage not in STAGES:
            raise ConfigError(f"model.init_args.stage must be one of {list(STAGES)}, got {stage!r}.")
        if tree not in TREES:
            raise ConfigError(f"model.init_args.tree must be one of {list(TREES)}, got {tree!r}.")
        if stage == "anchor" and tree == "learned":
            tree = "separate"  # the anchor's streams
        if not isinstance(self.weighting, FixedWeighting) or any(w != 1.0 for w in self.loss_weights.values()):
            raise ConfigError(
                "ControllableMultiTask weighs the task losses by the sampled preference r: drop model.weighting "
                "and model.loss_weights."
            )
        check_non_negative(branching_weight=branching_weight, compute_weight=compute_weight)
        if temperature <= 0 or dirichlet_alpha <= 0 or affinity_images < 2:
            raise ConfigError(
                "model.init_args: temperature and dirichlet_alpha must be > 0 and affinity_images >= 2, got "
                f"{temperature}, {dirichlet_alpha}, {affinity_images}."
            )
        self.stage = stage
        self.tree_mode = tree
        self.train_anchor = stage in ("anchor", "edges") if train_anchor is None else bool(train_anchor)
        self.init_checkpoint = init_checkpoint
        self.branching_weight = float(branching_weight)
        self.compute_weight = float(compute_weight)
        num = len(self.tasks)
        self.active_threshold = 1.0 / num if active_threshold is None else float(active_threshold)
        self.temperature = float(temperature)
        self.dirichlet_alpha = float(dirichlet_alpha)
        self.affinity_images = int(affinity_images)
        self.edge_hypernet = EdgeHypernet(num, hidden=hypernet_hidden, anchor_bias=anchor_bias)
        self.weight_hypernet = WeightHypernet(num, self.encoder.out_channels, hidden=hypernet_hidden)
        self.register_buffer("task_affinity", torch.eye(num))
        self.depth_macs = self.encoder.depth_macs(image_size)
        self.train_preference = check_request(train_preference, None, self.tasks)[0]
        self.set_request(preference, budget)
        self._restored = False

    # -- the request ------------------------------------------------------------------------------------------------
    def set_request(self, preference: Sequence[float] | None = None, budget: float | None = None) -> None:
        """Set the ``(r, c)`` that evaluation and predict run (``None``: uniform preference, budget 1)."""
        preference, budget = check_request(preference, budget, self.tasks)
        self.preference = preference if preference is not None else [1.0 / len(self.tasks)] * len(self.tasks)
        self.budget = 1.0 if budget is None else budget

    def _request_tensors(
        self, preference: Sequence[float] | None = None, budget: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.tensor(self.preference if preference is None else list(preference), device=self.device)
        c = torch.tensor(self.budget if budget is None else float(budget), device=self.device)
        return r.float(), c.float()

    def tree_for(self, preference: Sequence[float] | None = None, budget: float | None = None) -> Tree:
        """The tree this model runs for ``(r, c)`` (default: the current request)."""
        num = len(self.tasks)
        if self.tree_mode == "separate":
            return Tree.separate(num)
        if self.tree_mode == "shared":
            return Tree.shared(num)
        return self.edge_hypernet.tree(*self._request_tensors(preference, budget))

    def describe_request(self, preference: Sequence[float] | None = None, budget: float | None = None) -> str:
        """The tree for ``(r, c)`` as text, with its MACs and normalised compute."""
        preference, budget = check_request(preference, budget, self.tasks)
        r = preference if preference is not None else self.preference
        c = self.budget if budget is None else budget
        tree = self.tree_for(r, c)
        macs = tree.macs(self.depth_macs)
        return (
            f"preference {dict(zip(self.tasks, (round(v, 4) for v in r)))}, budget {c:g}: encoder "
            f"{macs / 1e6:.2f} MMACs per image (compute {tree.normalized_compute(self.depth_macs):.2f})\n"
            + tree.describe(self.tasks)
        )

    def request_info(self) -> dict[str, Any]:
        """The current request, its tree and its MACs, for ``request.json``."""
        tree = self.tree_for()
        return {
            "tasks": list(self.tasks),
            "preference": list(self.preference),
            "budget": self.budget,
            "tree": tree.to_dict(self.tasks),
            "encoder_macs": tree.macs(self.depth_macs),
            "compute": tree.normalized_compute(self.depth_macs),
            "text": tree.describe(self.tasks),
        }

    # -- forward ----------------------------------------------------------------------------------------------------
    def _film(self, r: torch.Tensor, c: torch.Tensor) -> list | None:
        """The weight modulation for ``(r, c)`` (stage ``weights`` only). A fixed tree's compute does not follow
        the budget, so its hypernetwork sees ``c = 0`` always, like Pareto HyperNetworks, which take ``r`` alone."""
        if self.stage != "weights":
            return None
        return self.weight_hypernet(r, c if self.tree_mode == "learned" else torch.zeros_like(c))

    def features(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        r, c = self._request_tensors()
        return self.encoder.run_tree(image, self.tree_for(), self._film(r, c))

    # -- set-up -----------------------------------------------------------------------------------------------------
    def trainable_modules(self) -> list[nn.Module]:
        """What this stage trains."""
        modules: list[nn.Module] = [self.encoder, self.heads] if self.train_anchor else []
        if self.stage == "edges" and self.tree_mode == "learned":
            modules.append(self.edge_hypernet)
        if self.stage == "weights":
            modules.append(self.weight_hypernet)
        return modules

    def optimized_parameters(self) -> list[tuple[str, nn.Parameter]]:
        trained = {id(p) for m in self.trainable_modules() for p in m.parameters()}
        return [(n, p) for n, p in self.named_parameters() if id(p) in trained]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._restored = True

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if not self.trainable_modules():
            raise ConfigError(
                f"stage {self.stage} with tree {self.tree_mode} trains nothing: the edge hypernetwork learns in stage "
                "edges only with tree learned."
            )
        if self._restored:
            return
        self.load_init_checkpoint()
        if self.stage == "edges":
            self.measure_task_affinity()

    def load_init_checkpoint(self) -> None:
        """Load the previous stage's parts from ``init_checkpoint``: the streams and heads, plus the edge
        hypernetwork and affinity for stage ``weights`` with a learned tree."""
        if not self.init_checkpoint:
            if self.stage == "edges" or (self.stage == "weights" and not self.train_anchor):
                raise ConfigError(
                    f"stage {self.stage} starts from a trained anchor: set model.init_args.init_checkpoint to the "
                    "last.ckpt of the previous stage's run."
                )
            return
        prefixes = ["encoder.", "heads."]
        if self.stage == "weights" and self.tree_mode == "learned":
            prefixes += ["edge_hypernet.", "task_affinity"]
        load_partial_state(
            self,
            self.init_checkpoint,
            prefixes,
            what="model.init_args.init_checkpoint",
            hint="Point it at the previous stage's run of the same tasks and encoder (stage anchor for edges, "
            "stage edges for weights).",
        )

    @torch.no_grad()
    def measure_task_affinity(self) -> None:
        """Measure :func:`task_affinity` on up to ``affinity_images`` source training images (no labels used)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = datamodule.images_dataset("source", "train") if hasattr(datamodule, "images_dataset") else None
        if dataset is None:
            raise ConfigError("stage edges measures task affinity on the source training images of a PairedDataModule.")
        count = min(self.affinity_images, len(dataset))
        images = torch.stack([dataset[i]["image"] for i in range(count)]).to(self.device)
        was_training = self.encoder.training
        self.encoder.eval()
        features = self.encoder.run_tree(images, Tree.separate(len(self.tasks)))  # stream t is task t's path
        self.encoder.train(was_training)
        per_stream = [[x.float().cpu() for x in features[t]] for t in self.tasks]
        self.task_affinity.copy_(task_affinity(per_stream).to(self.task_affinity.device))
        rank_zero_info(f"task affinity ({', '.join(self.tasks)}):\n{self.task_affinity.cpu().numpy().round(3)}")

    # -- training ---------------------------------------------------------------------------------------------------
    def sample_request(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``r ~ Dir(α 1)`` and ``c ~ U(0, 1)``, from the global generator (seeded by ``seed_everything``)."""
        num = len(self.tasks)
        if self.train_preference is not None:
            return torch.tensor(self.train_preference, device=self.device), torch.rand((), device=self.device)
        r = torch.distributions.Dirichlet(torch.full((num,), self.dirichlet_alpha)).sample().to(self.device)
        c = torch.rand((), device=self.device)
        return r, c

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        source = batch["source"] if "source" in batch else batch
        self.require_labels(source, "source")
        train_only(self, self.trainable_modules())
        image = source["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        size = tuple(image.shape[-2:])
        batch_size = image.shape[0]
        if self.stage == "anchor":  # the anchor's tree, with N r_t as loss weights (1 without a train preference)
            num = len(self.tasks)
            r = torch.tensor([num * v for v in self.train_preference or [1.0 / num] * num], device=self.device)
            features = self.encoder.run_tree(image, self.tree_for())
            extra, log = image.new_zeros(()), {}
        elif self.stage == "edges" and self.tree_mode == "learned":
            r, c = self.sample_request()
            logits = self.edge_hypernet(r, c)
            parents = relaxed_parents(logits, self.temperature)
            features = self.encoder.run_relaxed(image, parents)
            extra, log = self.structure_terms(logits, r, c, parents)
        else:
            r, c = self.sample_request()
            features = self.encoder.run_tree(image, self.tree_for(r.tolist(), float(c)), self._film(r, c))
            extra, log = image.new_zeros(()), {}
        losses = self.task_losses(self.decode(features, size), source)
        task_loss = sum(r[k] * losses[t] for k, t in enumerate(self.tasks))
        total = task_loss + extra
        self.log_losses("source", losses, batch_size, task_loss, prog_bar=True)
        for name, value in log.items():
            key = f"train/{name}" if name == "relaxed_compute" else f"train/{name}/loss"
            self.log(key, value.detach(), batch_size=batch_size)
        self.log(METRIC_NAMES["total"], total.detach(), batch_size=batch_size)
        return total

    def structure_terms(
        self, logits: torch.Tensor, r: torch.Tensor, c: torch.Tensor, parents: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``λ_b L_branch + λ_c |Ĉ - c|`` for parent logits ``[D, N, N]`` and a request, with its parts. ``Ĉ`` is
        the normalised compute of the sampled tree ``parents`` (straight-through Gumbel-softmax samples of
        ``logits``, drawn here when not given). Its value is the sampled tree's exact compute, and its gradient
        reaches the logits through the soft samples."""
        regularizer, l_active, l_inactive = branching_regularizer(
            logits, r, c, self.task_affinity, self.active_threshold
        )
        if parents is None:
            parents = relaxed_parents(logits, self.temperature)
        usage = relaxed_usage(parents)
        macs = (usage * usage.new_tensor(self.depth_macs)[:, None]).sum()
        compute = normalized_compute(macs, self.depth_macs, len(self.tasks))
        compute_term = (compute - c).abs()
        total = self.branching_weight * regularizer + self.compute_weight * compute_term
        parts = {"branching": regularizer, "active": l_active, "inactive": l_inactive, "compute": compute_term}
        return total, {**parts, "relaxed_compute": compute}

    # -- evaluation -------------------------------------------------------------------------------------------------
    def _log_tree(self, stage: str) -> None:
        tree = self.tree_for()
        self.log_dict(
            {
                f"{stage}/tree/compute": float(tree.normalized_compute(self.depth_macs)),
                f"{stage}/tree/mmacs": float(tree.macs(self.depth_macs) / 1e6),
            },
            add_dataloader_idx=False,
        )

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_tree("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_tree("test")

    def on_predict_start(self) -> None:
        rank_zero_info("umadapt: predicting with " + self.describe_request())

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "stage": self.stage}
