"""The tree search space of controllable dynamic multi-task networks (:mod:`umadapt.nn.dynamic`): trees and their
paths, MACs counted by hand and by executing the tree, Gumbel-softmax choices that become the argmax, the relaxed
forward equal to the discrete one for one-hot choices, and the hypernetworks' outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from umadapt.errors import ConfigError
from umadapt.nn import EdgeHypernet, ResNetEncoder, Tree, TreeEncoder, WeightHypernet
from umadapt.nn.dynamic import block_macs, check_request, relaxed_parents, relaxed_usage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = ["depth", "normals", "segmentation"]


def _encoder(width: int = 4) -> TreeEncoder:
    torch.manual_seed(0)
    return TreeEncoder(ResNetEncoder("resnet10", width, small_input=True), tasks=TASKS).eval()


def _one_hot(tree: Tree) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(tree.choice), len(TASKS)).float()


def test_paths_and_used_nodes_of_a_hand_built_tree():
    # depth and normals share blocks 0-1 (stream 0); normals branches at depth 2; segmentation keeps stream 2.
    tree = Tree.from_paths([[0, 0, 0, 0], [0, 0, 1, 1], [2, 2, 2, 2]])
    assert tree.paths() == [[0, 0, 0, 0], [0, 0, 1, 1], [2, 2, 2, 2]]
    assert tree.used() == [[0, 2], [0, 2], [0, 1, 2], [0, 1, 2]]
    assert Tree.separate(3).used() == [[0, 1, 2]] * 4
    assert Tree.shared(3).used() == [[0]] * 4
    assert "depth 1: s0:[depth normals]  s2:[segmentation]" in tree.describe(TASKS)
    with pytest.raises(ValueError, match="do not form a tree"):
        Tree.from_paths([[0, 1, 1, 1], [2, 1, 1, 1], [2, 2, 2, 2]])  # node (1, 1) with parents 0 and 2


def test_block_macs_equal_a_hand_count():
    """ResNet-10, width 4, 3x3 stem at stride 1 on 8x8 images: block 0 = stem (3->4) + two 3x3 convs (4->4), all
    at 8x8; block 1 = 3x3 (4->8, stride 2) + 3x3 (8->8) at 4x4 + the 1x1 downsample (4->8) at 4x4."""
    macs = block_macs(ResNetEncoder("resnet10", 4, small_input=True), (8, 8))
    assert macs[0] == 64 * 4 * 3 * 9 + 2 * 64 * 4 * 4 * 9
    assert macs[1] == 16 * 8 * 4 * 9 + 16 * 8 * 8 * 9 + 16 * 8 * 4
    tree = Tree.from_paths([[0, 0, 0, 0], [0, 0, 1, 1], [2, 2, 2, 2]])
    assert tree.macs(macs) == 2 * macs[0] + 2 * macs[1] + 3 * macs[2] + 3 * macs[3]
    assert Tree.shared(3).normalized_compute(macs) == 0.0
    assert Tree.separate(3).normalized_compute(macs) == 1.0
    expected = (tree.macs(macs) - sum(macs)) / (2 * sum(macs))
    assert tree.normalized_compute(macs) == pytest.approx(expected)


def test_a_tree_runs_exactly_the_convolutions_its_macs_count():
    """Count the MACs of every convolution that runs while the encoder executes a tree: they equal the tree's."""
    encoder = _encoder()
    executed = [0.0]

    def hook(module, inputs, output):
        executed[0] += output.numel() / output.shape[0] * module.in_channels * module.kernel_size[0] ** 2

    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    tree = Tree.from_paths([[0, 0, 0, 0], [0, 0, 1, 1], [2, 2, 2, 2]])
    with torch.no_grad():
        features = encoder.run_tree(torch.rand(2, 3, 8, 8), tree)
    assert executed[0] == tree.macs(encoder.depth_macs((8, 8)))
    assert features["depth"][1] is features["normals"][1]  # shared blocks are computed once
    assert features["depth"][2] is not features["normals"][2]


def test_gumbel_choices_are_one_hot_and_inference_takes_the_argmax():
    torch.manual_seed(0)
    hypernet = EdgeHypernet(3)
    for p in hypernet.net[-1].parameters():
        nn.init.normal_(p)
    r, c = torch.tensor([0.2, 0.3, 0.5]), torch.tensor(0.4)
    logits = hypernet(r, c)
    samples = relaxed_parents(logits, temperature=1.0)
    assert torch.equal(samples.sum(-1), torch.ones(4, 3))
    assert set(samples.unique().tolist()) == {0.0, 1.0}
    assert hypernet.tree(r, c).choice == tuple(tuple(row) for row in logits.argmax(-1).tolist())
    # samples follow the softmax: the most frequent choice of every consumer is the argmax
    counts = sum(relaxed_parents(logits, temperature=1.0).detach() for _ in range(2000))
    assert torch.equal(counts.argmax(-1), logits.argmax(-1))


def test_relaxed_forward_equals_the_tree_for_one_hot_choices_and_usage_counts_its_nodes():
    encoder = _encoder()
    tree = Tree.from_paths([[1, 1, 1, 1], [1, 1, 1, 0], [2, 2, 2, 2]])
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        exact, relaxed = encoder.run_tree(image, tree), encoder.run_relaxed(image, _one_hot(tree))
    for task in TASKS:
        for a, b in zip(exact[task], relaxed[task]):
            torch.testing.assert_close(a, b)
    usage = relaxed_usage(_one_hot(tree))
    assert [sorted(row.nonzero().flatten().tolist()) for row in usage] == tree.used()


def test_weight_hypernet_is_deterministic_starts_at_the_anchor_and_depends_on_the_request():
    torch.manual_seed(0)
    hypernet = WeightHypernet(3, [4, 8, 16, 32])
    r, c = torch.tensor([0.6, 0.2, 0.2]), torch.tensor(0.5)
    first = hypernet(r, c)
    assert all(torch.count_nonzero(g) == 0 and torch.count_nonzero(b) == 0 for g, b in first)  # identity at start
    for p in hypernet.net[-1].parameters():
        nn.init.normal_(p)
    a, b = hypernet(r, c), hypernet(r, c)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    other = hypernet(torch.tensor([0.2, 0.2, 0.6]), c)
    assert not torch.equal(a[0][0], other[0][0])
    assert [g.shape for g, _ in a] == [torch.Size([3, c_]) for c_ in (4, 8, 16, 32)]


def test_requests_are_checked_with_the_tasks_in_order():
    assert check_request([2, 1, 1], 0.5, TASKS) == ([0.5, 0.25, 0.25], 0.5)
    with pytest.raises(ConfigError, match=r"2 entries.*3 tasks.*\[depth, normals, segmentation\]"):
        check_request([0.5, 0.5], None, TASKS)
    with pytest.raises(ConfigError, match=r"non-negative.*\[depth, normals, segmentation\]"):
        check_request([0.5, -0.1, 0.6], None, TASKS)
    with pytest.raises(ConfigError, match="positive sum"):
        check_request([0, 0, 0], None, TASKS)
    for budget in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"budget .* outside \[0, 1\]"):
            check_request(None, budget, TASKS)
