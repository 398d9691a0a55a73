"""The real-dataset configs (experiments/gta5_cityscapes, synthia_cityscapes, nyud, office31, officehome) parsed
and run with ``fast_dev_run`` fit/test/predict on tiny fixture copies of the datasets under a temporary DATA_ROOT.

tests/test_cli.py's generic discovery skips these folders (``NEEDS_DATASET_FIXTURES``); this module covers every YAML
in them. The runs shrink the image size and the encoder (ResNet-18 at width 4 instead of the papers' ResNet-50/101,
whose depth alone costs ~10x the CPU time) and use no DataLoader workers, so they fit a CPU test budget; everything
else (datasets, tasks, classes, splits, method, optimizer) is the config as shipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import real_fixtures as fx
from tests.test_cli import NEEDS_DATASET_FIXTURES
from umadapt.benchmark import BENCHMARKS
from umadapt.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
FOLDERS = ("gta5_cityscapes", "synthia_cityscapes", "nyud", "office31", "officehome")
#: a small input size per folder (multiples of 32, the encoder's output stride)
SMALL_SIZE = {"gta5_cityscapes": "[64,128]", "synthia_cityscapes": "[64,128]", "nyud": "[64,96]", "office31": "[64,64]", "officehome": "[64,64]"}


def _config_sets() -> dict[str, list[Path]]:
    sets: dict[str, list[Path]] = {}
    for folder in FOLDERS:
        for path in sorted((EXPERIMENTS / folder).glob("*.yaml")):
            rel = path.relative_to(EXPERIMENTS).as_posix()
            base = path.parent / "base.yaml"
            sets[rel] = [base, path.parent / "source_only.yaml"] if path == base else [base, path]
    return sets


CONFIG_SETS = _config_sets()
RUN_SETS = sorted(name for name in CONFIG_SETS if not name.endswith("/source_only.yaml"))
"""Config sets to run: ``<folder>/source_only.yaml`` composes exactly like ``<folder>/base.yaml`` (base + source_only)."""


def _args(name: str) -> list[str]:
    configs = [arg for config in CONFIG_SETS[name] for arg in ("--config", str(config))]
    size = SMALL_SIZE[name.split("/")[0]]
    return [
        *configs,
        *(f"--data.init_args.{role}.init_args.image_size={size}" for role in ("source", "target")),
        "--data.init_args.batch_size=2",
        "--data.init_args.eval_batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.encoder.init_args.arch=resnet18",
        "--model.init_args.encoder.init_args.width=4",
        "--trainer.accelerator=cpu",
    ]


def test_every_yaml_of_the_fixture_folders_is_covered():
    assert set(FOLDERS) == {f for f, test in NEEDS_DATASET_FIXTURES.items() if test == "tests/test_real_configs.py"}
    for folder in FOLDERS:
        for path in (EXPERIMENTS / folder).rglob("*.yaml"):
            assert path.relative_to(EXPERIMENTS).as_posix() in CONFIG_SETS, path
    for configs in CONFIG_SETS.values():
        assert all(c.is_file() for c in configs), configs


def test_benchmarks_point_at_existing_configs():
    for name in ("gta5_cityscapes", "synthia_cityscapes", "nyud", "sim_nyud", "office31", "officehome"):
        bench = BENCHMARKS[name]
        assert (ROOT / bench.base).is_file() and all((ROOT / c).is_file() for c in bench.methods.values())
        assert bench.published, f"{name}: no published numbers to print"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~5x faster than two spinning ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fx.write_all(tmp_path_factory.mktemp("data_root"))


@pytest.mark.parametrize("name", sorted(CONFIG_SETS))
def test_print_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *[a for c in CONFIG_SETS[name] for a in ("--config", str(c))], "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "data_modules.real." in printed and "root: null" in printed  # every path comes from DATA_ROOT


def test_run_sets_cover_every_composition():
    assert {tuple(CONFIG_SETS[n]) for n in RUN_SETS} == {tuple(c) for c in CONFIG_SETS.values()}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_SETS)
def test_fast_dev_run_fit_test_predict(name, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    args = [*_args(name), "--trainer.fast_dev_run=true"]
    for subcommand in ("fit", "test", "predict"):
        main([subcommand, *args])


def test_published_numbers_are_rendered_under_the_table():
    from umadapt.benchmark import summarise, to_markdown

    bench = BENCHMARKS["office31"]
    records = {
        m: [{"metrics": {"test/target/label/accuracy": a, "test/target/label/mean_acc": a}}] for m, a in (("source_only", 0.5), ("oracle", 0.9))
    }
    wall = {m: {"runs": 1, "fit": 1.0, "test": 1.0} for m in records}
    text = to_markdown("office31", bench, summarise(bench, records), [0], wall, ["office31"])
    published = text.index("## Published numbers (BENCHMARKS.md)")
    assert text.index("## Headline") < published and "82.2 (original)" in text[published:]


def test_pair_summary_averages_over_pairs():
    from umadapt.benchmark_pairs import PAIRS, pair_args, summary_markdown

    assert len(PAIRS["office31"]) == 6 and len(PAIRS["officehome"]) == 12 and len(set(PAIRS["officehome"])) == 12
    assert pair_args("Real World", "Art")[0] == "--cli-arg=--data.init_args.source.init_args.domain=Real World"
    results = {
        tag: {"summary": {"source_only": {"metrics": {"label/accuracy": [acc, 0.01]}}}}
        for tag, acc in (("amazon_to_webcam", 0.60), ("dslr_to_webcam", 0.90))
    }
    text = summary_markdown("office31", results)
    assert "| amazon_to_webcam | 60.0 ± 1.0 |" in text and "| **average** | 75.0 |" in text and "82.2" in text
