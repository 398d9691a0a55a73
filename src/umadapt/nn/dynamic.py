"""Tree-structured multi-task networks whose branching and weights follow a request ``(r, c)``: the building blocks
of "Controllable Dynamic Multi-Task Architectures" (Raychaudhuri et al., CVPR 2022; the method itself is
:class:`umadapt.methods.ControllableMultiTask`).

**The search space.** The *anchor* (:class:`TreeEncoder`) holds ``N`` streams, one 4-stage ResNet column per task.
Block ``d`` of stream ``j`` is *node* ``(d, j)``. Every *consumer* picks one *parent* among the ``N`` nodes of the
depth below it. The consumers at level ``d = 1..3`` are the nodes ``(d, j)``; those at level 4 are the task heads,
so that heads may share every block as well. The nodes at depth 0 (stem + stage 1) read the image. A
:class:`Tree` is one parent choice per consumer, ``choice[d][j]``: the depth-``d`` node that feeds consumer
``j`` at level ``d + 1``.

Following the parents down from the heads gives each task its path. These paths form a tree: a node has one
parent, so two tasks that share a block share every block below it. A node that no task reaches is not
computed. The identity choice (``choice[d][j] = j``) is the anchor, with separate streams. Choosing ``0``
everywhere is hard parameter sharing.

**Compute** is the multiply-accumulates of the distinct nodes a tree keeps (:meth:`Tree.macs`). Every stream has
the same shape, so a node costs its depth's block MACs. The heads cost the same in every tree and are left out.
*Normalised compute* maps one shared stream to 0 and ``N`` separate streams to 1.

**Relaxation.** In training the parent choices are Gumbel-softmax samples: straight-through one-hot forward,
soft gradient (:func:`relaxed_parents`). Every node is computed on the mixture of its possible parents, and each
head reads the mixture along its sampled path. With one-hot samples, the forward values equal those of the
discrete tree. At inference the choice is the argmax (:meth:`EdgeHypernet.tree`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umadapt.errors import ConfigError
from umadapt.nn.multitask import run_stage

__all__ = [
    "EdgeHypernet",
    "Tree",
    "TreeEncoder",
    "WeightHypernet",
    "block_macs",
    "check_request",
    "normalized_compute",
    "relaxed_parents",
    "relaxed_usage",
]

NUM_DEPTHS = 4
T = TypeVar("T", float, Tensor)


@dataclass(frozen=True)
class Tree:
    """One parent choice per consumer (see the module docstring).

    Attributes:
        choice: ``choice[d][j]`` for ``d = 0..D-1`` is the stream whose depth-``d`` block feeds consumer ``j`` at
            level ``d + 1``. That consumer is node ``(d + 1, j)``, or task ``j``'s head when ``d = D - 1``.
    """

    choice: tuple[tuple[int, ...], ...]

    @classmethod
    def separate(cls, num_tasks: int, depths: int = NUM_DEPTHS) -> Tree:
        """The anchor: every task on its own stream."""
        return cls(tuple(tuple(range(num_tasks)) for _ in range(depths)))

    @classmethod
    def shared(cls, num_tasks: int, depths: int = NUM_DEPTHS) -> Tree:
        """Hard parameter sharing: every task on stream 0."""
        return cls(tuple((0,) * num_tasks for _ in range(depths)))

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> Tree:
        """The tree in which task ``t`` uses the blocks of streams ``paths[t]`` (one per depth, input first).
        Tasks that share a block must also share every block below it, or the paths do not form a tree."""
        num_tasks, depths = len(paths), len(paths[0])
        choice = [list(range(num_tasks)) for _ in range(depths)]  # nodes no path reaches keep their own stream
        parent: dict[tuple[int, int], int] = {}
        for t, path in enumerate(paths):
            if len(path) != depths:
                raise ValueError(f"every path needs {depths} streams, task {t} has {list(path)}.")
            choice[depths - 1][t] = path[-1]
            for d in range(depths - 1):
                node = (d + 1, path[d + 1])
                if parent.setdefault(node, path[d]) != path[d]:
                    raise ValueError(f"paths {paths} do not form a tree: node {node} has two parents.")
                choice[d][path[d + 1]] = path[d]
        return cls(tuple(tuple(row) for row in choice))

    @property
    def num_tasks(self) -> int:
        return len(self.choice[0])

    @property
    def depths(self) -> int:
        return len(self.choice)

    def paths(self) -> list[list[int]]:
        """``paths[t][d]``: the stream whose depth-``d`` block task ``t`` uses."""
        out = []
        for t in range(self.num_tasks):
            path, node = [], t
            for d in reversed(range(self.depths)):
                node = self.choice[d][node]
                path.append(node)
            out.append(path[::-1])
        return out

    def used(self) -> list[list[int]]:
        """The nodes a task reaches, per depth: ``used()[d]`` holds the streams whose depth-``d`` block is
        computed."""
        return [sorted({path[d] for path in self.paths()}) for d in range(self.depths)]

    def macs(self, depth_macs: Sequence[float]) -> float:
        """Multiply-accumulates of the blocks this tree keeps (heads excluded)."""
        return float(sum(len(nodes) * depth_macs[d] for d, nodes in enumerate(self.used())))

    def normalized_compute(self, depth_macs: Sequence[float]) -> float:
        """Compute in ``[0, 1]``: 0 for one shared stream, 1 for ``N`` separate streams."""
        return normalized_compute(self.macs(depth_macs), depth_macs, self.num_tasks)

    def describe(self, tasks: Sequence[str]) -> str:
        """The tree as text: per depth, which tasks share which block, e.g.
        ``depth 0: [depth normals segmentation]``, then ``depth 3: [depth] [normals segmentation]``."""
        lines = []
        paths = self.paths()
        for d in range(self.depths):
            groups: dict[int, list[str]] = {}
            for t, path in enumerate(paths):
                groups.setdefault(path[d], []).append(tasks[t])
            blocks = "  ".join(f"s{stream}:[{' '.join(names)}]" for stream, names in sorted(groups.items()))
            lines.append(f"depth {d}: {blocks}")
        return "\n".join(lines)

    def to_dict(self, tasks: Sequence[str]) -> dict[str, object]:
        """JSON-friendly description: the choice table, every task's path and the blocks shared per depth."""
        paths = self.paths()
        return {
            "choice": [list(row) for row in self.choice],
            "paths": {tasks[t]: paths[t] for t in range(self.num_tasks)},
            "blocks_per_depth": [len(nodes) for nodes in self.used()],
        }


def normalized_compute(macs: T, depth_macs: Sequence[float], num_streams: int) -> T:
    """``macs`` of some nodes (a float, or a tensor for a relaxed tree) on the scale of one shared stream (0) to
    ``num_streams`` separate streams (1)."""
    low = float(sum(depth_macs))
    return 0.0 * macs if num_streams == 1 else (macs - low) / (low * (num_streams - 1))


def check_request(preference: Sequence[float] | None, budget: float | None, tasks: Sequence[str]) -> tuple:
    """``(preference, budget)`` checked and as floats; a wrong request raises a one-line :class:`ConfigError`.

    The preference needs one non-negative weight per task, in task order, with a positive sum; it is normalised
    to sum to 1. The budget must lie in ``[0, 1]``."""
    order = ", ".join(tasks)
    if preference is not None:
        values = [float(v) for v in preference]
        if len(values) != len(tasks):
            raise ConfigError(
                f"preference has {len(values)} entries, but the model has {len(tasks)} tasks; give one weight per "
                f"task, in this order: [{order}]."
            )
        if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
            raise ConfigError(
                f"preference {values} must be non-negative with a positive sum: one weight per task, in this "
                f"order: [{order}] (it is normalised to sum to 1)."
            )
        preference = [v / sum(values) for v in values]
    if budget is not None:
        budget = float(budget)
        if not (0.0 <= budget <= 1.0):
            raise ConfigError(
                f"budget {budget} is outside [0, 1]: 0 asks for one shared stream (least compute), 1 allows one "
                "stream per task."
            )
    return preference, budget


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    last = nn.Linear(hidden, out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), last)


def _request(preference: Tensor, budget: Tensor) -> Tensor:
    """The hypernetworks' input ``[r, c]`` as a ``[1, N + 1]`` row."""
    return torch.cat([preference.reshape(1, -1), budget.reshape(1, 1)], dim=1).float()


class EdgeHypernet(nn.Module):
    """The edge hypernetwork ``h(r, c)``: logits of every consumer's parent choice, ``[D, N, N]``.

    Each ``[d, j]`` row ranks the ``N`` depth-``d`` nodes as parents of consumer ``j`` at level ``d + 1``. The
    network is an MLP on ``[r, c]``. Its last layer starts at zero (uniform choices), and ``anchor_bias`` is added
    to the diagonal, so that training starts near the anchor's separate streams rather than a random tree.

    Args:
        num_tasks: ``N``.
        depths: ``D`` (4 for the ResNet streams).
        hidden: width of the MLP.
        anchor_bias: logit added to the identity choice (own stream).
    """

    def __init__(self, num_tasks: int, depths: int = NUM_DEPTHS, hidden: int = 64, anchor_bias: float = 1.0) -> None:
        super().__init__()
        self.num_tasks, self.depths = int(num_tasks), int(depths)
        self.net = _mlp(num_tasks + 1, hidden, depths * num_tasks * num_tasks)
        self.register_buffer("prior", anchor_bias * torch.eye(num_tasks).expand(depths, -1, -1).clone())

    def forward(self, preference: Tensor, budget: Tensor) -> Tensor:
        logits = self.net(_request(preference, budget)).view(self.depths, self.num_tasks, self.num_tasks)
        return logits + self.prior

    @torch.no_grad()
    def tree(self, preference: Tensor, budget: Tensor) -> Tree:
        """The discrete tree for ``(r, c)``: every consumer takes its most likely parent (argmax)."""
        choice = self(preference, budget).argmax(dim=-1).tolist()
        return Tree(tuple(tuple(int(v) for v in row) for row in choice))


class WeightHypernet(nn.Module):
    """The weight hypernetwork ``h̄(r, c)``: a channel-wise modulation of every anchor node's output.

    Node ``(d, j)``'s output ``x`` becomes ``x * (1 + gamma) + beta``. ``gamma`` and ``beta`` (one value per
    channel) come from an MLP on ``[r, c]`` whose last layer starts at zero, so training starts from the anchor's
    weights. This FiLM modulation is equivalent to rescaling and shifting the output channels of each block's last
    convolution and BatchNorm.

    Args:
        num_tasks: ``N`` (streams).
        channels: output channels of each depth's block (``encoder.out_channels``).
        hidden: width of the MLP.
    """

    def __init__(self, num_tasks: int, channels: Sequence[int], hidden: int = 64) -> None:
        super().__init__()
        self.num_tasks = int(num_tasks)
        self.channels = [int(c) for c in channels]
        self.net = _mlp(num_tasks + 1, hidden, 2 * num_tasks * sum(self.channels))

    def forward(self, preference: Tensor, budget: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``[(gamma_d, beta_d)]`` per depth, each ``[N, C_d]`` (row ``j``: stream ``j``'s node)."""
        out = self.net(_request(preference, budget)).view(2, self.num_tasks, sum(self.channels))
        pieces = []
        start = 0
        for c in self.channels:
            pieces.append((out[0, :, start : start + c], out[1, :, start : start + c]))
            start += c
        return pieces


def relaxed_parents(logits: Tensor, temperature: float, hard: bool = True) -> Tensor:
    """Gumbel-softmax samples of the parent choices, ``[D, N, N]``: one-hot in the forward pass with a soft
    gradient (straight-through) when ``hard``."""
    return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)


def relaxed_usage(parents: Tensor) -> Tensor:
    """How much each node is used, ``[D, N]``, given parent weights ``[D, N, N]``. Every head is used (1). A node
    is used as much as the soft OR ``1 - Π_j (1 - u_j P[j, k])`` over its consumers ``j``. With one-hot choices
    this is exactly 1 for the nodes of the tree and 0 for the others."""
    depths, num = parents.shape[:2]
    usage = parents.new_ones(num)
    rows = []
    for d in reversed(range(depths)):
        usage = 1.0 - torch.prod(1.0 - usage[:, None] * parents[d], dim=0)
        rows.append(usage)
    return torch.stack(rows[::-1])


def block_macs(column: nn.Module, image_size: Sequence[int], in_channels: int = 3) -> list[float]:
    """Multiply-accumulates of each of a ResNet column's 4 blocks (stem + stage 1, stages 2-4) on one image of
    ``image_size``. Counted over its convolutions and linear layers; BatchNorm, ReLU and pooling are not counted."""
    counts: list[float] = []
    current = [0.0]

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            current[0] += float(output.numel() * kernel)
        elif isinstance(module, nn.Linear):
            current[0] += float(output.numel() * module.in_features)

    probe = copy.deepcopy(column).eval()
    handles = [m.register_forward_hook(hook) for m in probe.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, *[int(s) for s in image_size])
            for d in range(NUM_DEPTHS):
                current[0] = 0.0
                x = run_stage(probe, d, x)
                counts.append(current[0])
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _modulate(x: Tensor, film: tuple[Tensor, Tensor] | None, stream: int) -> Tensor:
    if film is None:
        return x
    gamma, beta = film
    return x * (1.0 + gamma[stream].view(1, -1, 1, 1)) + beta[stream].view(1, -1, 1, 1)


class TreeEncoder(nn.Module):
    """The anchor network: ``N`` ResNet streams, one per task, run as any :class:`Tree` of their blocks.

    It follows the per-task encoder protocol of :class:`~umadapt.methods.base.MultiTaskModel`
    (``per_task_features``, ``bind_tasks``, ``forward(image) -> {task: [C1..C4]}``). Called plainly it runs
    :attr:`tree`, which is the separate streams unless a method sets another. :meth:`run_tree` runs a discrete
    tree and computes only the nodes it keeps. :meth:`run_relaxed` runs soft parent weights over every node.

    Args:
        backbone: the stream template (a 4-stage :class:`~umadapt.nn.ResNetEncoder`), copied once per task.
        tasks: fixes the stream order; default: the model's tasks.
    """

    per_task_features = True

    def __init__(self, backbone: nn.Module, tasks: list[str] | None = None) -> None:
        super().__init__()
        if len(getattr(backbone, "stages", [])) != NUM_DEPTHS or not hasattr(backbone, "conv1"):
            raise ConfigError(
                f"TreeEncoder: the backbone must be a 4-stage umadapt.nn.ResNetEncoder; got {type(backbone).__name__}."
            )
        self._template = [backbone]
        self.out_channels: list[int] = list(backbone.out_channels)
        self.reductions: list[int] = list(backbone.reductions)
        self.output_stride: int = int(backbone.output_stride)
        self.in_channels = int(backbone.conv1.in_channels)
        self.tasks: list[str] = []
        self.streams = nn.ModuleList()
        self.tree: Tree | None = None
        if tasks:
            self.bind_tasks(tasks)

    def bind_tasks(self, tasks: Sequence[str]) -> None:
        tasks = list(tasks)
        if self.tasks:
            if sorted(self.tasks) != sorted(tasks):
                raise ConfigError(
                    f"TreeEncoder was built for the tasks {self.tasks}, but the model predicts {tasks}: make "
                    "encoder.init_args.tasks list the model's tasks (or drop it)."
                )
            return
        if len(tasks) < 2 or len(set(tasks)) != len(tasks):
            raise ConfigError(f"TreeEncoder needs at least two distinct tasks, got {tasks}.")
        self.tasks = tasks
        self.streams.extend(copy.deepcopy(self._template[0]) for _ in tasks)
        self.tree = Tree.separate(len(tasks))

    def check_input_size(self, image_size: Sequence[int]) -> None:
        check = getattr(self._template[0], "check_input_size", None)
        if check is not None:
            check(image_size)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def depth_macs(self, image_size: Sequence[int]) -> list[float]:
        """MACs of one node at each depth, for images of ``image_size``."""
        return block_macs(self._template[0], image_size, self.in_channels)

    def forward(self, image: Tensor) -> dict[str, list[Tensor]]:
        if self.tree is None:
            raise ConfigError("TreeEncoder has no tasks yet: pass tasks=[...] or call bind_tasks(tasks).")
        return self.run_tree(image, self.tree)

    def run_tree(
        self, image: Tensor, tree: Tree, film: Sequence[tuple[Tensor, Tensor]] | None = None
    ) -> dict[str, list[Tensor]]:
        """Every task's features along its path in ``tree``; only the nodes the tree keeps are computed. ``film``:
        the weight hypernetwork's modulation (:class:`WeightHypernet`)."""
        paths = tree.paths()
        outputs: list[dict[int, Tensor]] = []
        for d in range(tree.depths):
            level: dict[int, Tensor] = {}
            for stream in sorted({path[d] for path in paths}):
                x = image if d == 0 else outputs[d - 1][tree.choice[d - 1][stream]]
                level[stream] = _modulate(run_stage(self.streams[stream], d, x), film and film[d], stream)
            outputs.append(level)
        return {task: [outputs[d][paths[t][d]] for d in range(tree.depths)] for t, task in enumerate(self.tasks)}

    def run_relaxed(
        self, image: Tensor, parents: Tensor, film: Sequence[tuple[Tensor, Tensor]] | None = None
    ) -> dict[str, list[Tensor]]:
        """Every task's features under soft parent weights ``parents`` ``[D, N, N]`` (rows: consumers, columns:
        parents). Every node is computed on the weighted mix of its parents' outputs. A head reads, at each depth,
        the mix of nodes weighted by the probability that its path passes there."""
        num = len(self.tasks)
        outputs: list[Tensor] = []  # [N, B, C, H, W] per depth
        for d in range(NUM_DEPTHS):
            nodes = []
            for j in range(num):
                if d == 0:
                    x = image
                else:
                    x = torch.einsum("k,kbchw->bchw", parents[d - 1, j].to(outputs[-1].dtype), outputs[-1])
                nodes.append(_modulate(run_stage(self.streams[j], d, x), film and film[d], j))
            outputs.append(torch.stack(nodes))
        features: dict[str, list[Tensor]] = {}
        for t, task in enumerate(self.tasks):
            reach = parents[NUM_DEPTHS - 1, t]  # over the depth-(D-1) nodes
            levels = [None] * NUM_DEPTHS
            for d in reversed(range(NUM_DEPTHS)):
                levels[d] = torch.einsum("k,kbchw->bchw", reach.to(outputs[d].dtype), outputs[d])
                if d > 0:
                    reach = reach @ parents[d - 1]
            features[task] = levels
        return features

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}"
