"""CyCADA's pixel stage (:mod:`umadapt.methods.cycada`): training shrinks the cycle reconstruction error, the frozen
task network stays the checkpoint's (weights, BatchNorm statistics, eval mode) while its reading of the translations
trains the generators, the translator checkpoint round-trips into a translated data module, predict and the image
grids show translations, bad input is named; and every CyCADA YAML through the CLI (tests/test_cli.py leaves them
here, tests/config_owners.yaml: the translator needs a source-only checkpoint, the task stage a translator)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from data_modules import PairedDataModule
from tests.helpers import (
    TINY_CLI,
    ToyDomain,
    config_args,
    fit_test_predict,
    one_step_run,
    stack_id,
    tiny_model,
    tiny_trainer,
)
from umadapt import visualize
from umadapt.bench.registry import config_stacks
from umadapt.callbacks.outputs import ImageGridLogger, PredictionWriter
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import CyCADATranslator
from umadapt.pixel import TRANSLATOR_KEY, least_squares_gan_loss, load_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 16
TASKS = ["depth", "normals", "segmentation"]
GENERATOR = {"width": 4, "downsamples": 1, "blocks": 1}
DISCRIMINATOR = {"width": 4, "layers": 2}


def _adam(params):
    """CycleGAN's Adam at 10x its rate: a visible change in a few dozen steps of a tiny generator."""
    return torch.optim.Adam(params, lr=2e-3, betas=(0.5, 0.999))


def _translator(cls: type = CyCADATranslator, **kwargs) -> CyCADATranslator:
    """A CyCADA translator with tiny generators and discriminators over a tiny task network (plain CycleGAN unless
    ``semantic_weight`` and ``task_checkpoint`` are given)."""
    options = {"generator": GENERATOR, "discriminator": DISCRIMINATOR, "semantic_weight": 0.0}
    return tiny_model(cls, width=4, image_size=(SIZE, SIZE), **{**options, **kwargs})


def _saved_task_network(tmp_path: Path, tasks: list[str] = TASKS, width: int = 4, name: str = "task.ckpt") -> Path:
    """A source-only task network's checkpoint, as a run writes its weights and identity (BatchNorm statistics moved
    off their initial values, so a reset or an update shows)."""
    torch.manual_seed(3)
    network = tiny_model(tasks=tasks, width=width, image_size=(SIZE, SIZE))
    network.train()
    with torch.no_grad():
        network(torch.rand(4, 3, SIZE, SIZE))
    path = tmp_path / name
    torch.save({"state_dict": network.state_dict(), "umadapt": network.identity()}, path)
    return path


@pytest.fixture
def domains() -> tuple[ToyDomain, ToyDomain]:
    return ToyDomain(seed=0, image_size=SIZE), ToyDomain(seed=1, image_size=SIZE, shift=0.3)


def _data(domains, **kwargs) -> PairedDataModule:
    return PairedDataModule(*domains, batch_size=4, tasks=TASKS, **{"augmentation": "none", **kwargs})


# -- training -------------------------------------------------------------------------------------------------------
def test_cycle_reconstruction_improves_over_a_short_training(domains, tmp_path):
    """Cycle loss alone (no adversary, no identity, no semantic term), 30 batches: the logged reconstruction error
    ``val/<domain>/cycle_l1`` of the fixed validation images at least halves in both directions."""
    torch.manual_seed(0)
    model = _translator(gan_weight=0.0, identity_weight=0.0, cycle_weight=1.0, optimizer=_adam)
    data = _data(domains)

    def cycle_l1() -> dict[str, float]:
        results = tiny_trainer(tmp_path, limit_val_batches=1).validate(model, datamodule=data, verbose=False)
        merged = {k: v for result in results for k, v in result.items()}
        return {domain: merged[f"val/{domain}/cycle_l1"] for domain in ("source", "target")}

    before = cycle_l1()
    tiny_trainer(tmp_path, max_steps=60, max_epochs=100, limit_val_batches=0).fit(model, datamodule=data)
    assert model.global_step == 60, "two optimizer steps (generators, discriminators) per batch: 30 batches"
    after = cycle_l1()
    for domain in before:
        assert after[domain] < 0.5 * before[domain], (domain, before, after)


def test_the_frozen_task_network_keeps_its_weights_and_statistics_and_stays_in_eval_mode(domains, tmp_path):
    """A few steps with every term on (validation in between): the task network is the checkpoint's, bit for bit,
    BatchNorm running statistics included, in eval mode at every training step, outside every optimizer; the
    generators and discriminators train."""
    path = _saved_task_network(tmp_path)
    modes = []

    class Recording(CyCADATranslator):
        def training_step(self, batch, batch_idx):
            frozen = [m.training for m in self.task_network.modules()]
            players = [m.training for m in (*self.generators.modules(), *self.discriminators.modules())]
            modes.append((any(frozen), all(players)))
            return super().training_step(batch, batch_idx)

    model = _translator(Recording, task_checkpoint=str(path), semantic_weight=1.0)
    start = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("generators.", "discriminators."))}
    trainer = tiny_trainer(tmp_path, max_steps=6, max_epochs=100, limit_val_batches=1)  # 3 batches, val after 2
    trainer.fit(model, datamodule=_data(domains))
    assert modes == [(False, True)] * 3, "task network in eval mode, generators and discriminators in train mode"

    saved = torch.load(path, weights_only=True)["state_dict"]
    frozen = model.task_network.state_dict()
    assert any(k.endswith("running_mean") for k in frozen) and any(k.endswith("num_batches_tracked") for k in frozen)
    changed = [k for k, v in frozen.items() if not torch.equal(v, saved[k])]
    assert not changed, f"the frozen task network changed: {changed[:5]}"
    assert not any(p.requires_grad for p in model.task_network.parameters())
    optimized = {id(p) for optimizer in trainer.optimizers for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in model.task_network.parameters())
    after = model.state_dict()
    for part in ("generators.source_to_target.", "generators.target_to_source.", "discriminators."):
        assert any(not torch.equal(v, after[k]) for k, v in start.items() if k.startswith(part)), f"{part} never moved"
    metrics = trainer.callback_metrics
    assert all(torch.isfinite(metrics[f"train/semantic/{t}/loss"]) for t in TASKS)
    model.train()  # what older Lightning versions did when training started, and what a callback may do
    assert not any(m.training for m in model.task_network.modules()) and model.generators.training


def test_one_backward_pass_trains_each_player_with_its_own_loss_only(domains, tmp_path):
    """The generators and discriminators step on one backward pass of the sum of their losses: the discriminators'
    gradient is that of their least-squares loss alone (the generators' adversarial term does not reach them), the
    generators' that of their adversarial term alone (the discriminators see detached translations)."""
    expected, recorded = {}, {}

    class Checking(CyCADATranslator):
        def training_step(self, batch, batch_idx):
            source, target = batch["source"]["image"], batch["target"]["image"]
            fake_target, fake_source = self.translate(source, "source"), self.translate(target, "target")
            d_target, d_source = self.discriminators["target"], self.discriminators["source"]
            generators = least_squares_gan_loss(d_target(fake_target), True)
            generators = generators + least_squares_gan_loss(d_source(fake_source), True)
            discriminators = 0.5 * (
                least_squares_gan_loss(d_target(target), True)
                + least_squares_gan_loss(d_target(fake_target.detach()), False)
                + least_squares_gan_loss(d_source(source), True)
                + least_squares_gan_loss(d_source(fake_source.detach()), False)
            )
            expected["generators"] = torch.autograd.grad(generators, list(self.generators.parameters()))
            expected["discriminators"] = torch.autograd.grad(discriminators, list(self.discriminators.parameters()))
            return super().training_step(batch, batch_idx)

        def on_before_optimizer_step(self, optimizer):
            params = optimizer.param_groups[0]["params"]
            player = "generators" if params[0] is next(self.generators.parameters()) else "discriminators"
            recorded[player] = [p.grad.clone() for p in params]
            super().on_before_optimizer_step(optimizer)

    model = _translator(Checking, gan_weight=1.0, cycle_weight=0.0, identity_weight=0.0)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_data(domains))
    assert recorded.keys() == expected.keys() == {"generators", "discriminators"}
    for player in expected:
        assert len(recorded[player]) == len(expected[player])
        for got, want in zip(recorded[player], expected[player]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_the_semantic_term_trains_the_generators_through_the_frozen_network(domains, tmp_path):
    """With the semantic term alone, the generators still move: its gradient reaches them through the frozen task
    network, whose weights stay put."""
    path = _saved_task_network(tmp_path)
    model = _translator(
        task_checkpoint=str(path), semantic_weight=1.0, gan_weight=0.0, cycle_weight=0.0, identity_weight=0.0
    )
    start = {k: v.clone() for k, v in model.generators.state_dict().items()}
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_data(domains))
    after = model.generators.state_dict()
    for direction in ("source_to_target", "target_to_source"):
        assert any(not torch.equal(start[k], after[k]) for k in start if k.startswith(direction)), direction
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.task_network.state_dict().items())


def test_semantic_terms_of_an_identity_translation_are_the_networks_own_baseline(tmp_path):
    """The model's semantic terms for a translation that changes nothing: depth and normals 0 (the network reads
    the same values), segmentation the network's own ``mean(-log max softmax)`` on the image, not 0 (the label is
    the argmax, scored by cross-entropy; see tests/pixel/test_pixel.py)."""
    model = _translator(task_checkpoint=str(_saved_task_network(tmp_path)), semantic_weight=1.0)
    model.trainer = tiny_trainer(tmp_path)
    model.setup("fit")
    images = torch.rand(2, 3, SIZE, SIZE)
    terms = model._semantic_terms(images, images.clone())
    zero = torch.tensor(0.0)
    torch.testing.assert_close(terms["depth"], zero, atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["normals"], zero, atol=1e-5, rtol=0)
    with torch.no_grad():
        logits = model(images)["segmentation"]
    baseline = -F.log_softmax(logits, dim=1).max(dim=1).values.mean()
    torch.testing.assert_close(terms["segmentation"].detach(), baseline)


# -- the translator checkpoint and what reads it --------------------------------------------------------------------
def test_the_translator_checkpoint_round_trips_into_a_translated_data_module(domains, tmp_path):
    """``last.ckpt`` of a translator run holds both generators and their settings: :func:`load_translator` gives back
    the trained generator of each direction, and ``source_translator`` serves the source images translated by it,
    refusing a domain of another image size with both sizes named."""
    model = _translator()
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=_data(domains))
    path = tmp_path / "translator.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["hyper_parameters"]  # the encoder object given in process; a CLI run saves its config as plain data
    torch.save(checkpoint, path)
    spec = torch.load(path, weights_only=True)[TRANSLATOR_KEY]
    assert spec == {"generator": GENERATOR, "image_size": [SIZE, SIZE]}
    for direction in ("source_to_target", "target_to_source"):
        translator = load_translator(path, direction)
        assert translator.image_size == (SIZE, SIZE) and translator.direction == direction
        mine = model.generators[direction].state_dict()
        assert all(torch.equal(v, mine[k]) for k, v in translator.generator.state_dict().items())
    with pytest.raises(ConfigError, match="Unknown translation direction"):
        load_translator(path, "sideways")

    data = _data(domains, source_translator=str(path))
    served = data.eval_dataset("source", "val")[0]
    original = torch.from_numpy(domains[0].dataset("val")[0]["image"]).permute(2, 0, 1)
    model.eval()
    with torch.no_grad():
        expected = model.translate(original[None], "source")[0]
    torch.testing.assert_close(served["image"], expected, atol=0.5 / 255 + 1e-6, rtol=0)  # kept as 8-bit images
    assert data.describe()["source"]["translator"] == str(path)
    with pytest.raises(ConfigError, match=r"trained on 16x16 images, but the domain 'toy-0' has 32x32"):
        PairedDataModule(ToyDomain(seed=0), ToyDomain(seed=1), source_translator=str(path))


def test_predict_writes_translations_and_the_validation_grids_show_input_translation_reconstruction(
    domains, tmp_path, drawn_text
):
    logger = CSVLogger(tmp_path, name="run")
    out = tmp_path / "predictions"
    callbacks = [ImageGridLogger(num_images=2), PredictionWriter(str(out))]
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=logger)
    model = _translator()
    data = _data(domains)
    trainer.fit(model, datamodule=data)
    tile = max(visualize.MIN_TILE // SIZE, 1) * SIZE + 2
    for domain in ("source", "target"):
        grid = np.asarray(Image.open(Path(logger.log_dir) / "images" / f"val_{domain}_epoch000.png"))
        assert grid.shape[1] == 3 * tile + 2, "three columns: input, translated, reconstructed"
    assert {"input", "translated", "reconstructed"} <= set(drawn_text)
    assert "ground truth" not in drawn_text, "a translator's grid shows images, not task predictions"

    trainer.predict(model, datamodule=data, return_predictions=False)  # data.predict_domain: target
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{i:05d}_{key}.png" for i in range(8) for key in ("image", "translated")), written
    image = data.eval_dataset("target", "test")[0]["image"]
    with torch.no_grad():
        expected = visualize.image_to_rgb(model.generators["target_to_source"](image[None])[0])
    translated = np.asarray(Image.open(out / "00000_translated.png").convert("RGB"))
    assert np.abs(translated.astype(int) - expected.astype(int)).max() <= 1


# -- bad input ------------------------------------------------------------------------------------------------------
def test_bad_task_checkpoints_are_named(domains, tmp_path):
    def fit(checkpoint: Path) -> None:
        model = _translator(task_checkpoint=str(checkpoint), semantic_weight=1.0)
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=_data(domains))

    with pytest.raises(ConfigError, match=r"model\.init_args\.task_checkpoint not found: '.*missing\.ckpt'"):
        fit(tmp_path / "missing.ckpt")
    other_tasks = _saved_task_network(tmp_path, tasks=["depth"], name="depth.ckpt")
    expected = "predicts tasks ['depth'], this model ['depth', 'normals', 'segmentation']"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        fit(other_tasks)
    wider = _saved_task_network(tmp_path, width=8, name="wide.ckpt")
    with pytest.raises(ConfigError, match="another architecture. Use a task network with the same encoder"):
        fit(wider)


def test_impossible_settings_are_refused_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="set model.init_args.task_checkpoint"):
        _translator(semantic_weight=1.0)
    with pytest.raises(ConfigError, match=r"downsamples 64x, but the images are 16x16"):
        _translator(generator={"width": 4, "downsamples": 6, "blocks": 1})
    with pytest.raises(ConfigError, match="model.init_args.generator or discriminator: .*'depth'"):
        _translator(generator={"width": 4, "depth": 2})
    with pytest.raises(ConfigError, match="drop model.lr_multipliers"):
        _translator(lr_multipliers={"generators": 2.0})
    with pytest.raises(ValueError, match="cycle_weight"):
        _translator(cycle_weight=-1.0)


# -- every YAML, through the CLI ------------------------------------------------------------------------------------
STACKS = config_stacks()
TRANSLATOR_CONFIGS = [STACKS[f"{b}/cycada_translator.yaml"] for b in ("digits", "synthrooms")]
TASK_STAGE_CONFIGS = [
    STACKS[name]
    for name in (
        "digits/cycada_pixel.yaml",
        "digits/cycada.yaml",
        "synthrooms/cycada_pixel.yaml",
        "synthrooms/cycada.yaml",
        "synthrooms/cycada_umadapt.yaml",
    )
]
"""Each stack as the benchmark registry composes it (experiments/benchmarks.yaml)."""
TINY = TINY_CLI


def _benchmark(stack: list[Path]) -> str:
    return stack[0].parent.name


@pytest.fixture(scope="module")
def source_only_runs(tmp_path_factory) -> dict[str, Path]:
    """One-step source-only runs of Digits and SynthRooms on tiny data: the task networks of the translators."""
    return {
        name: one_step_run(tmp_path_factory.mktemp(f"{name}_source_only"), STACKS[f"{name}/source_only.yaml"])
        for name in ("digits", "synthrooms")
    }


@pytest.fixture(scope="module")
def translators(tmp_path_factory, source_only_runs) -> dict[str, Path]:
    """One-batch translator runs of each benchmark's cycada_translator.yaml on those task networks."""
    return {
        name: one_step_run(
            tmp_path_factory.mktemp(f"{name}_translator"),
            STACKS[f"{name}/cycada_translator.yaml"],
            f"--model.init_args.task_checkpoint={source_only_runs[name]}",
        )
        for name in ("digits", "synthrooms")
    }


@pytest.mark.slow
@pytest.mark.parametrize("stack", TRANSLATOR_CONFIGS, ids=stack_id)
def test_cycada_translator_yaml_runs_from_a_source_only_run(stack, source_only_runs, tmp_path, monkeypatch):
    """fit, test and predict as a user's first run: the frozen network scored on translated images, predictions
    that are translations, image grids of input, translation and reconstruction."""
    monkeypatch.chdir(tmp_path)
    args = [*config_args(*stack), *TINY, f"--model.init_args.task_checkpoint={source_only_runs[_benchmark(stack)]}"]
    record = fit_test_predict(args, tmp_path)
    assert record["method"] == "CyCADATranslator"
    assert any(k.startswith("test/target/") and k.endswith("/cycle_l1") for k in record["metrics"]), record["metrics"]
    assert sorted((tmp_path / "smoke" / "predictions").glob("*_translated.png"))
    if _benchmark(stack) == "synthrooms":  # Digits validates every 5th epoch: no grid after one
        assert sorted(tmp_path.rglob("images/val_target_epoch000.png"))
        # bf16-mixed, as test_cli does for the other methods
        main(["fit", *args, "--trainer.fast_dev_run=true", "--trainer.precision=bf16-mixed"])


@pytest.mark.slow
@pytest.mark.parametrize("stack", TASK_STAGE_CONFIGS, ids=stack_id)
def test_cycada_task_stage_yaml_runs_from_a_translator(stack, translators, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    translator = translators[_benchmark(stack)]
    args = [*config_args(*stack), *TINY, f"--data.init_args.source_translator={translator}"]
    record = fit_test_predict(args, tmp_path)
    assert record["data"]["source"]["translator"] == str(translator)


@pytest.mark.slow
def test_the_cli_names_a_source_translator_that_is_not_a_translator_or_of_another_size(
    source_only_runs, translators, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    stack = STACKS["synthrooms/cycada_pixel.yaml"]
    checks = {
        "is not an image translator (its method: SourceOnly)": [
            f"--data.init_args.source_translator={source_only_runs['synthrooms']}"
        ],
        "was trained on 64x64 images, but the domain": [
            f"--data.init_args.source_translator={translators['synthrooms']}",
            "--data.init_args.source.init_args.image_size=32",
            "--data.init_args.target.init_args.image_size=32",
        ],
    }
    for message, extra in checks.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", *config_args(*stack), *TINY, *extra, "--trainer.fast_dev_run=true"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, error[-2000:]
    with pytest.raises(SystemExit) as exit_info:  # the shipped placeholder, left as it is
        main(["fit", *config_args(*stack), *TINY, "--trainer.fast_dev_run=true"])
    assert exit_info.value.code == 2
    assert "source_translator not found: 'REQUIRED'" in capsys.readouterr().err
