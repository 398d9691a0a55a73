"""The digits as a multi-task classification benchmark: ``parity`` and ``magnitude`` derived from every digit's
``label`` (:mod:`data_modules.digits.dataset`), registered as 2-class tasks (:mod:`umadapt.tasks`), served in batches
next to ``label``, and trained and scored by a method built from the digits config; a ``[label]`` run is unchanged."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.digits import Digits, DigitsM
from data_modules.digits.dataset import magnitude, parity
from tests.helpers import EXPERIMENTS, ToyDomain, config_args, small_data
from umadapt.samples import to_tensor_sample
from umadapt.tasks import get_task

DIGIT_TASKS = ["label", "parity", "magnitude"]
PARITY = {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 1, 6: 0, 7: 1, 8: 0, 9: 1}
MAGNITUDE = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}


def _data(tasks: list[str] | None, augmentation: str = "none", **sizes: int) -> PairedDataModule:
    sizes = {"train_size": 8, "val_size": 4, "test_size": 8, **sizes}
    return PairedDataModule(Digits(**sizes), DigitsM(**sizes), tasks=tasks, batch_size=4, augmentation=augmentation)


def test_derived_labels_of_every_digit():
    assert {d: parity(d) for d in range(10)} == PARITY
    assert {d: magnitude(d) for d in range(10)} == MAGNITUDE
    seen = set()
    for domain in (Digits(), DigitsM()):
        assert tuple(domain.tasks) == tuple(DIGIT_TASKS) and domain.num_classes == 10
        for sample in domain.dataset("train"):
            digit = sample["label"]
            assert (sample["parity"], sample["magnitude"]) == (PARITY[digit], MAGNITUDE[digit]), digit
            assert all(type(sample[k]) is int for k in DIGIT_TASKS)
            seen.add(digit)
    assert seen == set(range(10))  # every digit was checked


def test_batches_carry_the_derived_tasks_through_augmentation():
    """An int per-image key is collated like ``label`` (int64 ``[B]``) and passes the (flipping) augmentation."""
    assert to_tensor_sample({"parity": 1})["parity"].dtype == torch.int64
    dm = _data(DIGIT_TASKS, augmentation="hflip")
    batch = next(iter(dm.train_dataloader()))[0]
    source = batch["source"]
    assert set(source) == {"image", *DIGIT_TASKS} and set(batch["target"]) == {"image"}
    for task in DIGIT_TASKS:
        assert source[task].dtype == torch.int64 and source[task].shape == (4,)
    assert torch.equal(source["parity"], source["label"] % 2)
    assert torch.equal(source["magnitude"], (source["label"] >= 5).long())
    test_source = next(iter(dm.test_dataloader()[0]))
    assert set(test_source) == {"image", *DIGIT_TASKS}


def test_label_only_data_is_unchanged():
    """``data.tasks: [label]`` loads the image and the label alone, the very values the domain's raw sample holds."""
    dm = _data(["label"])
    raw = Digits(train_size=8, val_size=4, test_size=8).dataset("test")
    for index in range(len(raw)):
        sample = dm.eval_dataset("source", "test")[index]
        assert set(sample) == {"image", "label"}
        assert int(sample["label"]) == raw[index]["label"]
        assert torch.equal(sample["image"], torch.from_numpy(raw[index]["image"]).permute(2, 0, 1))


def test_derived_tasks_have_two_classes_whatever_the_data():
    for name in ("parity", "magnitude"):
        task = get_task(name)
        assert not task.dense and task.channels == 2 and task.out_channels(10) == 2
        assert task.metric(10).num_classes == 2  # not the data's 10 digit classes
        assert task.labelled(torch.tensor([0, 1, -1])).tolist() == [True, True, False]
        loss = task.loss(torch.tensor([[4.0, -4.0], [-4.0, 4.0]]), torch.tensor([0, 1]))
        assert 0.0 < float(loss) < 1e-3
        assert pickle.loads(pickle.dumps(task)) == task  # models hold their tasks and must pickle
    assert get_task("label").metric(10).num_classes == 10


def test_source_only_trains_and_scores_every_digit_task(tmp_path, monkeypatch):
    """The digits config with ``data.tasks: [label, parity, magnitude]``: 2-channel heads for the derived tasks, one
    fast_dev_run training step, and test metrics for every task on both domains."""
    from umadapt.cli import build_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["umadapt"])  # pytest's own arguments are not the CLI's
    cli = build_cli(
        [
            *config_args(EXPERIMENTS / "digits" / "base.yaml"),
            *small_data(train_size=8, val_size=4, test_size=8, batch_size=4),
            "--data.init_args.tasks=[label,parity,magnitude]",
            "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu",
        ],
        run=False,
    )
    model = cli.model
    assert type(model).__name__ == "SourceOnly" and model.tasks == DIGIT_TASKS and model.num_classes == 10
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(2, 3, 32, 32))
    model.train()
    assert {t: tuple(o.shape) for t, o in outputs.items()} == {"label": (2, 10), "parity": (2, 2), "magnitude": (2, 2)}
    before = {k: v.clone() for k, v in model.heads["parity"].state_dict().items()}
    cli.trainer.fit(model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1
    assert any(not torch.equal(before[k], v) for k, v in model.heads["parity"].state_dict().items())  # trained
    results = cli.trainer.test(model, datamodule=cli.datamodule, verbose=False)[0]
    for domain in ("source", "target"):
        for task in DIGIT_TASKS:
            for metric in ("accuracy", "mean_acc"):
                value = results[f"test/{domain}/{task}/{metric}"]
                assert 0.0 <= value <= 1.0, (domain, task, metric, value)
        assert model.metrics[f"test_{domain}"]["parity"].num_classes == 2
        assert model.metrics[f"test_{domain}"]["magnitude"].num_classes == 2


def test_bad_task_names_are_named():
    with pytest.raises(ValueError, match=r"Unknown task\(s\) \['oddness'\] in data.tasks. Known tasks: .*'parity'"):
        _data(["label", "oddness"])
    with pytest.raises(ValueError, match=r"Unknown task 'oddness'. Known tasks: .*'magnitude'"):
        get_task("oddness")
    with pytest.raises(ValueError, match=r"does not provide \['parity'\]"):
        PairedDataModule(ToyDomain(0), ToyDomain(1), tasks=["depth", "parity"])
    assert np.array_equal(_data(["parity"]).tasks, ["parity"])  # the derived tasks alone are accepted too


def test_digits_train_label_alone_unless_data_tasks_asks_for_more():
    """The digits serve parity and magnitude, but a config without data.tasks trains the label only, as before."""
    assert _data(None).tasks == ["label"]


def test_every_class_task_is_categorical():
    """Output-level adversaries see class probabilities and uncertainty weighting treats them as classification."""
    assert [
        t for t in ("depth", "normals", "segmentation", "label", "parity", "magnitude") if get_task(t).categorical
    ] == [
        "segmentation",
        "label",
        "parity",
        "magnitude",
    ]
    from umadapt.methods import SourceOnly
    from umadapt.nn import ResNetEncoder

    model = SourceOnly(ResNetEncoder("resnet10", 4, small_input=True), tasks=["label", "parity"], num_classes=10)
    logits = torch.randn(3, 2)
    torch.testing.assert_close(model.adversary_view("parity", logits).sum(1), torch.ones(3))
