"""Methods declare only their own parameters and reach the base model's through ``**kwargs``: the CLI must still
show and accept every base argument for each of them (jsonargparse follows ``**kwargs`` into ``super().__init__``)."""

from __future__ import annotations

import inspect
import re

import pytest

from umadapt.cli import main
from umadapt.methods import DANN, MultiTaskModel, SourceOnly, TargetOracle, UMAdapt, UniversalRepresentations

BASE_ARGUMENTS = [name for name in inspect.signature(MultiTaskModel.__init__).parameters if name != "self"]
OWN_ARGUMENTS = {
    DANN: ["adversary", "grl_schedule", "domain_weight"],
    UMAdapt: ["phases", "energy_margin", "source_checkpoint"],
    UniversalRepresentations: ["teachers", "distill_weight", "adapter"],
    SourceOnly: [],
    TargetOracle: [],
}


@pytest.mark.parametrize("method", list(OWN_ARGUMENTS), ids=lambda m: m.__name__)
def test_help_lists_base_and_own_arguments(method, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", method.__name__])
    assert exit_info.value.code in (0, None)
    shown = capsys.readouterr().out
    for name in [*BASE_ARGUMENTS, *OWN_ARGUMENTS[method]]:
        assert re.search(rf"--model\.{name}\b", shown), f"{method.__name__} --model.help does not list {name}"


@pytest.mark.parametrize("method", [DANN, UMAdapt, UniversalRepresentations], ids=lambda m: m.__name__)
def test_methods_restate_no_base_argument(method):
    own = set(inspect.signature(method.__init__).parameters) - {"self", "kwargs"}
    assert not own & set(BASE_ARGUMENTS), f"{method.__name__} restates {sorted(own & set(BASE_ARGUMENTS))}"
    assert "kwargs" in inspect.signature(method.__init__).parameters


@pytest.mark.parametrize("method", [DANN, UMAdapt, UniversalRepresentations], ids=lambda m: m.__name__)
def test_base_arguments_are_saved_as_hyperparameters(method):
    from umadapt.nn import ResNetEncoder

    model = method(
        encoder=ResNetEncoder("resnet10", 4, small_input=True),
        tasks=["depth", "normals"],
        num_classes=2,
        lr_schedule="cosine",
        loss_weights={"depth": 2.0},
    )
    assert model.hparams["lr_schedule"] == "cosine" and model.hparams["loss_weights"] == {"depth": 2.0}
    assert set(BASE_ARGUMENTS) <= set(model.hparams)
