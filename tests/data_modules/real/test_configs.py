"""The real-dataset configs (experiments/gta5_cityscapes, synthia_cityscapes, nyud, office31, officehome) parsed and
run (fit one batch, test its checkpoint, predict) on tiny fixture copies of the datasets under a temporary DATA_ROOT.

tests/test_cli.py leaves these folders to this module (tests/config_owners.yaml), which runs every YAML in them. The
runs shrink the image size and the encoder (ResNet-18 at width 4 instead of the papers' ResNet-50/101, whose depth
alone costs ~10x the CPU time) and use no DataLoader workers, so they fit a CPU test budget; everything else
(datasets, tasks, classes, splits, method, optimizer) is the config as shipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import EXPERIMENTS, config_args, fit_test_predict, stack_id
from umadapt.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FOLDERS = ("gta5_cityscapes", "synthia_cityscapes", "nyud", "office31", "officehome")
#: a small input size per folder (multiples of 32, the encoder's output stride)
SMALL_SIZE = {
    "gta5_cityscapes": "[64,128]",
    "synthia_cityscapes": "[64,128]",
    "nyud": "[64,96]",
    "office31": "[64,64]",
    "officehome": "[64,64]",
}


def _stack(path: Path) -> list[Path]:
    """A folder's base composes with its source-only method; every other file is a method on the base."""
    base = path.parent / "base.yaml"
    return [base, path.parent / "source_only.yaml"] if path == base else [base, path]


CONFIGS = sorted(path for folder in FOLDERS for path in (EXPERIMENTS / folder).glob("*.yaml"))
CYCADA = {
    "cycada_translator.yaml": "model.init_args.task_checkpoint",
    "cycada.yaml": "data.init_args.source_translator",
}
"""CyCADA's stages, which start from a checkpoint (key): a source-only run, then a translator run."""
RUNS = list({stack_id(_stack(path)): _stack(path) for path in CONFIGS if path.name not in CYCADA}.values())
"""One run per distinct stack: ``<folder>/source_only.yaml`` composes exactly like ``<folder>/base.yaml``."""
CYCADA_RUNS = [_stack(path) for path in CONFIGS if path.name in CYCADA]
SMALL_TRANSLATOR = [
    "--model.init_args.generator={width: 4, downsamples: 2, blocks: 1}",
    "--model.init_args.discriminator={width: 4, layers: 3}",
]
"""CycleGAN's generator and discriminator at 4 base channels and one residual block (the configs' 64 and 9 are sized
for a GPU), as the encoder is shrunk."""


def _args(stack: list[Path]) -> list[str]:
    size = SMALL_SIZE[stack[0].parent.name]
    return [
        *config_args(*stack),
        *(f"--data.init_args.{role}.init_args.image_size={size}" for role in ("source", "target")),
        "--data.init_args.batch_size=2",
        "--data.init_args.eval_batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.encoder.init_args.arch=resnet18",
        "--model.init_args.encoder.init_args.width=4",
        "--trainer.accelerator=cpu",
    ]


def test_every_yaml_of_the_folders_is_run():
    """Every file under the folders, subfolders included, is in the stack of some run of
    :func:`test_fit_test_predict`, and every file a stack names exists (a folder without ``source_only.yaml`` would
    leave its base unrunnable)."""
    on_disk = {p for folder in FOLDERS for p in (EXPERIMENTS / folder).rglob("*.yaml")}
    run = {p for stack in RUNS + CYCADA_RUNS for p in stack}
    assert on_disk <= run, f"never run here: {sorted(p.relative_to(EXPERIMENTS).as_posix() for p in on_disk - run)}"
    assert all(p.is_file() for p in run), sorted(str(p) for p in run if not p.is_file())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_print_config(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *config_args(*_stack(path)), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "data_modules.real." in printed and "root: null" in printed  # every path comes from DATA_ROOT


@pytest.mark.slow
@pytest.mark.parametrize("stack", RUNS, ids=stack_id)
def test_fit_test_predict(stack, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    fit_test_predict(_args(stack), tmp_path)


def _one_batch_run(root: Path, stack: list[Path], *extra: str) -> Path:
    """``last.ckpt`` of a one-batch ``fit`` of ``stack`` on the fixture data, without validation."""
    main(
        [
            "fit",
            *_args(stack),
            *extra,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.logger.init_args.save_dir={root}",
        ]
    )
    (checkpoint,) = root.rglob("last.ckpt")
    return checkpoint


@pytest.fixture(scope="module")
def cycada_checkpoints(data_root, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per folder with CyCADA configs, ``{"cycada_translator.yaml": a source-only run's last.ckpt, "cycada.yaml": a
    translator run's (on that source-only run)}``: what each stage starts from."""
    checkpoints: dict[str, dict[str, Path]] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DATA_ROOT", str(data_root))
        for folder in sorted({stack[0].parent for stack in CYCADA_RUNS}):
            root = tmp_path_factory.mktemp(f"{folder.name}_cycada")
            source_only = _one_batch_run(root / "source_only", _stack(folder / "source_only.yaml"))
            translator = _one_batch_run(
                root / "translator",
                _stack(folder / "cycada_translator.yaml"),
                *SMALL_TRANSLATOR,
                f"--{CYCADA['cycada_translator.yaml']}={source_only}",
            )
            checkpoints[folder.name] = {"cycada_translator.yaml": source_only, "cycada.yaml": translator}
    return checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("stack", CYCADA_RUNS, ids=stack_id)
def test_cycada_yaml_runs_on_the_fixture_data(stack, cycada_checkpoints, data_root, tmp_path, monkeypatch):
    """The translator from a source-only run, the task stage from a translator run: fit one batch, test, predict."""
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    name = stack[-1].name
    extra = SMALL_TRANSLATOR if name == "cycada_translator.yaml" else []
    checkpoint = cycada_checkpoints[stack[0].parent.name][name]
    fit_test_predict([*_args(stack), *extra, f"--{CYCADA[name]}={checkpoint}"], tmp_path)
