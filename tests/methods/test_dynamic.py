"""Controllable dynamic multi-task networks (:mod:`umadapt.methods.dynamic`): each stage trains only its part; the
branching regularizer and compute term alone learn to share everything at budget 0 and separate at budget 1; task
affinity by RSA; the request is checked; and the DYMU YAMLs chain through the CLI (anchor -> edges -> weights), with
``predict`` honouring the preference and budget given on the command line (tests/test_cli.py leaves edges.yaml and
weights.yaml here, tests/config_owners.yaml: each starts from the previous stage's checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_modules import PairedDataModule
from tests.helpers import (
    EXPERIMENTS,
    TINY_CLI,
    ToyDomain,
    config_args,
    one_step_run,
    stack_id,
    tiny_trainer,
)
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import ControllableMultiTask, SourceOnly
from umadapt.methods.dynamic import branching_regularizer, task_affinity
from umadapt.nn import ResNetEncoder, Tree, TreeEncoder
from umadapt.tree import main as tree_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = ["depth", "normals", "segmentation"]
DYNAMIC = EXPERIMENTS / "dynamic"


def _model(**kwargs) -> ControllableMultiTask:
    torch.manual_seed(0)
    encoder = TreeEncoder(ResNetEncoder("resnet10", 4, small_input=True))
    return ControllableMultiTask(encoder=encoder, tasks=TASKS, num_classes=2, image_size=(16, 16), **kwargs)


def _data() -> PairedDataModule:
    return PairedDataModule(
        ToyDomain(0, image_size=16, size=8), ToyDomain(1, image_size=16, size=8), tasks=TASKS, batch_size=4
    )


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fit(model: ControllableMultiTask, tmp_path: Path, steps: int = 2) -> None:
    tiny_trainer(tmp_path, max_steps=steps, limit_val_batches=0).fit(model, datamodule=_data())


def _save(model: ControllableMultiTask, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_each_stage_trains_its_part_only(tmp_path):
    anchor = _model(stage="anchor")
    before = _state(anchor)
    _fit(anchor, tmp_path)
    assert not torch.equal(before["encoder.streams.0.conv1.weight"], anchor.encoder.streams[0].conv1.weight)
    assert torch.equal(before["edge_hypernet.net.4.weight"], anchor.edge_hypernet.net[4].weight)
    anchor_ckpt = _save(anchor, tmp_path / "anchor.ckpt")

    edges = _model(stage="edges", init_checkpoint=str(anchor_ckpt))
    _fit(edges, tmp_path, steps=3)  # the anchor trains on as a supernet with the edge hypernetwork
    assert not torch.equal(anchor.encoder.streams[0].conv1.weight, edges.encoder.streams[0].conv1.weight)
    assert not torch.equal(before["edge_hypernet.net.4.weight"], edges.edge_hypernet.net[4].weight)
    frozen = _model(stage="edges", init_checkpoint=str(anchor_ckpt), train_anchor=False)
    _fit(frozen, tmp_path, steps=2)
    for key, value in _state(anchor.encoder).items():  # weights and BatchNorm statistics: bit-identical
        assert torch.equal(value, frozen.encoder.state_dict()[key]), key
    assert not torch.equal(edges.task_affinity, torch.eye(3))  # measured when the stage starts
    edges_ckpt = _save(edges, tmp_path / "edges.ckpt")

    weights = _model(stage="weights", init_checkpoint=str(edges_ckpt))
    _fit(weights, tmp_path)
    assert torch.equal(edges.edge_hypernet.net[4].weight, weights.edge_hypernet.net[4].weight)
    assert torch.equal(edges.task_affinity, weights.task_affinity)
    for part in ("encoder", "heads"):  # the anchor is frozen in this stage: bit-identical to the edges run's
        for key, value in _state(getattr(edges, part)).items():
            assert torch.equal(value, getattr(weights, part).state_dict()[key]), (part, key)
    assert torch.count_nonzero(weights.weight_hypernet.net[4].weight) > 0


def test_a_later_stage_without_its_start_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="init_checkpoint"):
        _fit(_model(stage="edges"), tmp_path)


def test_regularizer_and_compute_term_alone_share_at_budget_zero_and_separate_at_budget_one():
    """Train the edge hypernetwork on λ_b L_branch + λ_c |Ĉ - c| only (no task loss), for sampled requests: a
    dominant preference at budget 0 gives one shared stream, the uniform one at budget 1 separate streams, and the
    compute of the chosen trees grows with the budget."""
    model = _model(stage="edges")
    model.task_affinity.copy_(torch.tensor([[1.0, 0.9, 0.5], [0.9, 1.0, 0.4], [0.5, 0.4, 1.0]]))
    optimizer = torch.optim.Adam(model.edge_hypernet.parameters(), lr=1e-2)
    for _ in range(2000):
        r, c = model.sample_request()
        loss, _ = model.structure_terms(model.edge_hypernet(r, c), r, c)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for preference in ([0.6, 0.2, 0.2], [0.2, 0.2, 0.6], [0.2, 0.6, 0.2]):
        assert [len(nodes) for nodes in model.tree_for(preference, 0.0).used()] == [1, 1, 1, 1], preference
    assert model.tree_for([1 / 3] * 3, 1.0).paths() == Tree.separate(3).paths()
    grid = ([1 / 3] * 3, [0.6, 0.2, 0.2], [0.2, 0.2, 0.6], [0.2, 0.6, 0.2], [0.4, 0.4, 0.2])
    mean = [sum(model.tree_for(r, c).normalized_compute(model.depth_macs) for r in grid) / 5 for c in (0, 0.5, 1)]
    assert mean == sorted(mean) and mean[2] - mean[0] >= 0.5, mean


def test_inactive_tasks_are_pulled_to_their_most_affine_active_task():
    logits = torch.zeros(4, 3, 3, requires_grad=True)
    affinity = torch.tensor([[1.0, 0.2, 0.8], [0.2, 1.0, 0.3], [0.8, 0.3, 1.0]])
    preference = torch.tensor([0.7, 0.2, 0.1])  # depth active; normals and segmentation inactive
    total, active, inactive = branching_regularizer(logits, preference, torch.tensor(0.0), affinity, 1 / 3)
    total.backward()
    # at budget 0 only the inactive term acts: normals' and segmentation's consumers move towards stream 0
    assert (logits.grad[:, 1, 0] < 0).all() and (logits.grad[:, 2, 0] < 0).all()
    assert (logits.grad[:, 0] == 0).all()  # the active task's consumers are not pulled at budget 0
    assert active.item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_a_fixed_tree_ignores_the_budget():
    model = _model(stage="weights", tree="shared", train_anchor=True).eval()
    torch.nn.init.normal_(model.weight_hypernet.net[4].weight, std=0.1)
    image = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        low = model(image)
        model.set_request(None, 0.9)
        high = model(image)
    assert all(torch.equal(low[t], high[t]) for t in TASKS)
    assert model.tree_for(None, 1.0) == Tree.shared(3)


def test_task_affinity_is_one_on_the_diagonal_and_higher_for_related_representations():
    torch.manual_seed(0)
    base = torch.randn(16, 32)
    related = base + 0.1 * torch.randn(16, 32)
    unrelated = torch.randn(16, 32)
    affinity = task_affinity([[base] * 4, [related] * 4, [unrelated] * 4])
    torch.testing.assert_close(affinity.diagonal(), torch.ones(3))
    assert affinity[0, 1] > 0.8 > affinity[0, 2]


def test_requests_and_arguments_are_checked():
    model = _model(stage="weights", preference=[2, 1, 1], budget=0.5)
    assert model.preference == [0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match=r"\[depth, normals, segmentation\]"):
        _model(preference=[0.5, 0.5])
    with pytest.raises(ConfigError, match="budget"):
        _model(budget=2.0)
    with pytest.raises(ConfigError, match="TreeEncoder"):
        ControllableMultiTask(encoder=ResNetEncoder("resnet10", 4, small_input=True), tasks=TASKS, num_classes=2)
    with pytest.raises(ConfigError, match="stage"):
        _model(stage="everything")


def test_the_weight_modulation_is_deterministic_and_follows_the_request():
    model = _model(stage="weights").eval()
    torch.nn.init.normal_(model.weight_hypernet.net[4].weight, std=0.1)
    image = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        first, again = model(image), model(image)
        model.set_request([0.8, 0.1, 0.1], 1.0)
        other = model(image)
    assert all(torch.equal(first[t], again[t]) for t in TASKS)
    assert not torch.equal(first["depth"], other["depth"])


# -- the YAMLs through the CLI ----------------------------------------------------------------------------------------
TINY = TINY_CLI
STAGES = [[DYNAMIC / "base.yaml", DYNAMIC / "edges.yaml"], [DYNAMIC / "base.yaml", DYNAMIC / "weights.yaml"]]


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory) -> dict[str, Path]:
    anchor = one_step_run(tmp_path_factory.mktemp("anchor"), [DYNAMIC / "base.yaml"])
    edges = one_step_run(tmp_path_factory.mktemp("edges"), STAGES[0], f"--model.init_args.init_checkpoint={anchor}")
    return {"edges": anchor, "weights": edges}


@pytest.mark.slow
@pytest.mark.parametrize("stack", STAGES, ids=stack_id)
def test_dynamic_stage_yamls_run_from_the_previous_stage(stack, stage_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    start = stage_runs[stack[-1].stem]
    out = tmp_path / "predictions"
    args = [*config_args(*stack), *TINY, f"--model.init_args.init_checkpoint={start}"]
    main(["fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    main(["test", *args, f"--ckpt_path={checkpoint}", "--trainer.limit_test_batches=1", "--results.path=r.json"])
    assert "test/source/segmentation/miou" in json.loads(Path("r.json").read_text())["metrics"]
    request = ["--model.init_args.preference=[0.6, 0.2, 0.2]", "--model.init_args.budget=0.25"]
    main(["predict", *args, f"--ckpt_path={checkpoint}", *request, f"--predictions.output_dir={out}",
          "--trainer.limit_predict_batches=1"])  # fmt: skip
    written = json.loads((out / "request.json").read_text())
    assert written["preference"] == pytest.approx([0.6, 0.2, 0.2]) and written["budget"] == 0.25
    model = ControllableMultiTask.load_from_checkpoint(checkpoint, weights_only=False)
    assert written["tree"]["choice"] == [list(row) for row in model.tree_for([0.6, 0.2, 0.2], 0.25).choice]
    assert sorted(out.glob("*_depth.png"))
    capsys.readouterr()
    tree_main(
        [*config_args(*stack), f"--ckpt_path={checkpoint}", "--preference", "0.6", "0.2", "0.2", "--budget", "0.25"]
    )
    printed = capsys.readouterr().out
    assert "budget 0.25" in printed and "MMACs" in printed
    assert model.tree_for([0.6, 0.2, 0.2], 0.25).describe(TASKS) in printed


@pytest.mark.slow
def test_a_bad_request_on_the_command_line_is_one_line_naming_the_fix(stage_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stack = config_args(*STAGES[1])
    ckpt = f"--ckpt_path={stage_runs['weights']}"
    for request, expected in (
        ("--model.init_args.preference=[0.5, 0.5]", "in this order: [depth, normals, segmentation]"),
        ("--model.init_args.budget=1.5", "outside [0, 1]"),
    ):
        with pytest.raises(SystemExit):
            main(["predict", *stack, *TINY, ckpt, request, "--trainer.limit_predict_batches=1"])
        assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", *config_args(EXPERIMENTS / "mtl" / "base.yaml"), "--model.init_args.budget=0.5"])
    err = capsys.readouterr().err
    assert "not accepted by umadapt.methods.SourceOnly" in err and "umadapt.methods.ControllableMultiTask" in err
    assert SourceOnly.__name__ in err
