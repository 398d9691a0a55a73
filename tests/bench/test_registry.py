"""The benchmark registry (experiments/benchmarks.yaml): the shipped file loads, and mistakes fail in one line
that names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from umadapt.bench.registry import REGISTRY_PATH, config_stacks, get_benchmark, load_registry
from umadapt.errors import ConfigError

ROOT = REGISTRY_PATH.parents[1]
SYNTHROOMS = "experiments/synthrooms"


@pytest.mark.parametrize("path", [REGISTRY_PATH], ids=lambda p: p.name)  # tests/config_owners.yaml checks the id
def test_shipped_registry_loads_with_existing_stacks(path):
    registry = load_registry(path)
    assert {"synthrooms", "digits", "mtl", "gta5_cityscapes", "nyud", "office31", "officehome"} <= set(registry)
    for bench in registry.values():
        for method in bench.methods:
            stack = bench.stack(method)
            assert stack[0] == ROOT / bench.base and all(p.is_file() for p in stack), (bench.name, method)
    for name in ("gta5_cityscapes", "synthia_cityscapes", "nyud", "sim_nyud", "office31", "officehome", "digits"):
        assert registry[name].published, f"{name}: no published numbers to print"
    assert not any("BENCHMARKS.md" in text for b in registry.values() for text in b.published.values())


def test_pairs_are_listed_in_the_papers_order():
    office31, officehome = get_benchmark("office31"), get_benchmark("officehome")
    assert office31.pairs[:2] == (("amazon", "webcam"), ("dslr", "webcam")) and len(set(office31.pairs)) == 6
    domains = ("Art", "Clipart", "Product", "Real World")
    assert set(officehome.pairs) == {(s, t) for s in domains for t in domains if s != t}


def test_ablations_are_deltas_stacked_after_the_full_method():
    stacks = config_stacks()
    full = [ROOT / SYNTHROOMS / "base.yaml", ROOT / SYNTHROOMS / "umadapt.yaml"]
    for name in ("umadapt_no_ccr", "umadapt_no_energy", "umadapt_semi"):
        assert stacks[f"synthrooms/{name}.yaml"] == [*full, ROOT / SYNTHROOMS / f"{name}.yaml"]
        delta = yaml.safe_load((ROOT / SYNTHROOMS / f"{name}.yaml").read_text())
        assert "class_path" not in delta.get("model", {}), f"{name} restates the method instead of changing it"
    assert stacks["synthrooms/umadapt.yaml"] == full
    assert stacks["mtl/universal.yaml"] == [ROOT / "experiments/mtl/base.yaml", ROOT / "experiments/mtl/universal.yaml"]


@pytest.mark.parametrize("name", ["digits", "synthrooms"])
def test_cycada_rows_chain_source_only_then_the_translator_then_the_task_stage(name):
    """The translator reads that seed's source-only network, every task stage that seed's translator; each task
    stage is a delta stacked after the method it runs on the translated source."""
    bench, folder = get_benchmark(name), ROOT / "experiments" / name
    assert bench.stack("cycada_translator") == [folder / "base.yaml", folder / "cycada_translator.yaml"]
    assert bench.checkpoints_from["cycada_translator"] == {"model.init_args.task_checkpoint": "source_only"}
    stages = {"cycada_pixel": "source_only", "cycada": "dann"} | (
        {"cycada_umadapt": "umadapt"} if name == "synthrooms" else {}
    )
    assert {m for m in bench.methods if m.startswith("cycada")} == {"cycada_translator", *stages}
    for stage, method in stages.items():
        assert bench.checkpoints_from[stage] == {"data.init_args.source_translator": "cycada_translator"}
        assert bench.stack(stage) == [*bench.stack(method), folder / f"{stage}.yaml"]
        delta = yaml.safe_load((folder / f"{stage}.yaml").read_text())
        assert "model" not in delta, f"{stage} restates the method instead of changing the data"


def _registry(tmp_path: Path, **changes) -> Path:
    """A one-benchmark registry in a copy of the repository layout (``<tmp>/experiments/benchmarks.yaml``)."""
    folder = tmp_path / "experiments" / "toy"
    folder.mkdir(parents=True)
    for name in ("base", "source_only", "oracle"):
        (folder / f"{name}.yaml").write_text("{}\n")
    entry = {
        "base": "experiments/toy/base.yaml",
        "methods": {"source_only": ["experiments/toy/source_only.yaml"], "oracle": ["experiments/toy/oracle.yaml"]},
        "headline": {"depth": "rmse"},
        **changes,
    }
    path = tmp_path / "experiments" / "benchmarks.yaml"
    path.write_text(yaml.safe_dump({"toy": entry}))
    return path


def test_a_valid_registry_gives_stacks_relative_to_its_root(tmp_path):
    bench = get_benchmark("toy", _registry(tmp_path))
    assert bench.stack("oracle") == [tmp_path / "experiments/toy/base.yaml", tmp_path / "experiments/toy/oracle.yaml"]
    assert bench.reference == "source_only" and bench.oracle == "oracle" and bench.headline_keys == ["depth/rmse"]
    assert bench.checkpoints_from == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metods": {}}, r"unknown key\(s\) \['metods'\]; valid keys: \["),
        ({"methods": {"dann": ["experiments/toy/dann.yaml"]}}, r"experiments/toy/dann.yaml does not exist; fix the"),
        ({"methods": {"dann": "experiments/toy/base.yaml"}}, r"method 'dann' must be a non-empty list of YAML files"),
        ({"reference": "baseline"}, r"reference 'baseline' is not one of its methods"),
        ({"oracle": "upper"}, r"oracle 'upper' is not one of its methods; name one or set oracle: null"),
        ({"headline": {"depth": "speed"}}, r"headline metric depth/speed has no known direction"),
        ({"pairs": [["amazon"]]}, r"each pair must be \[source, target\]"),
        ({"epoch_scale": {"progressive": 3}}, r"epoch_scale names \['progressive'\], which are not among its methods"),
        ({"extra_report": "no_such_module:lines"}, r"extra_report 'no_such_module:lines' must be 'module:function'"),
    ],
)
def test_mistakes_fail_in_one_line_naming_the_fix(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_registry(_registry(tmp_path, **changes))
    assert "\n" not in str(error.value)


SINGLE = {"single_task": {"depth": "source_only"}}
KEY = "model.init_args.teachers"


def test_single_task_checkpoints_take_a_key_or_a_key_and_the_runs_that_give_them(tmp_path):
    checkpoints = {"oracle": {"key": KEY, "runs": {"depth": "source_only"}}}
    bench = get_benchmark("toy", _registry(tmp_path, **SINGLE, single_task_checkpoints=checkpoints))
    assert bench.single_task_checkpoints == {"oracle": KEY} and bench.checkpoint_runs("oracle") == {
        "depth": "source_only"
    }
    assert bench.checkpoint_runs("source_only") == {}, "a method without single_task_checkpoints receives nothing"
    mtl = get_benchmark("mtl")
    assert mtl.checkpoint_runs("universal") == mtl.single_task, "a bare key receives the single_task runs"
    assert set(mtl.checkpoint_runs("universal_long_teachers").values()) == {f"teacher_{t}" for t in mtl.single_task}


@pytest.mark.parametrize(
    ("checkpoints", "message"),
    [
        ({"oracle": {"key": KEY, "runs": {"depth": "teacher"}}}, r"runs names \['teacher'\], which are not among"),
        ({"oracle": {"key": KEY, "runs": {"normals": "source_only"}}}, r"cover the tasks \['normals'\]; give one run"),
        ({"oracle": {"key": KEY}}, r"single_task_checkpoints of 'oracle' is \{'key': .*; e.g. \{universal: model"),
        ({"oracle": 3}, r"single_task_checkpoints of 'oracle' is 3; e.g."),
    ],
)
def test_single_task_checkpoint_runs_mistakes_are_named(tmp_path, checkpoints, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_registry(_registry(tmp_path, **SINGLE, single_task_checkpoints=checkpoints))
    assert "\n" not in str(error.value)


def test_missing_required_keys_unknown_benchmark_and_missing_file(tmp_path):
    path = _registry(tmp_path)
    path.write_text(yaml.safe_dump({"toy": {"base": "experiments/toy/base.yaml"}}))
    with pytest.raises(ConfigError, match=r"lacks \['methods', 'headline'\]; add them"):
        load_registry(path)
    with pytest.raises(ConfigError, match=r"Unknown benchmark 'nope'; registered: \["):
        get_benchmark("nope")
    with pytest.raises(ConfigError, match="Benchmark registry not found: .*pass --registry"):
        load_registry(tmp_path / "missing.yaml")


TEACHER = "model.init_args.teacher_checkpoint"


def test_checkpoints_from_maps_each_consumer_to_its_producers(tmp_path):
    methods = {m: [f"experiments/toy/{f}.yaml"] for m, f in [("source_only", "source_only"), ("oracle", "oracle")]}
    methods["student"] = ["experiments/toy/oracle.yaml"]
    chain = {"oracle": {TEACHER: "source_only"}, "student": {TEACHER: "oracle", "model.init_args.init": "source_only"}}
    bench = get_benchmark("toy", _registry(tmp_path, methods=methods, checkpoints_from=chain))
    assert bench.checkpoints_from == chain, "a producer that itself consumes is fine without a cycle"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"dann": {TEACHER: "source_only"}}, r"checkpoints_from names 'dann', which is not among its methods \["),
        (
            {"oracle": {TEACHER: "teacher"}},
            r"checkpoints_from gives oracle's model.init_args.teacher_checkpoint the checkpoint of 'teacher', which is "
            r"not among its methods \[",
        ),
        ({"oracle": {TEACHER: "oracle"}}, r"checkpoints_from: oracle cannot take its own checkpoint \(model.init_args"),
        (
            {"oracle": {TEACHER: "source_only"}, "source_only": {TEACHER: "oracle"}},
            r"checkpoints_from has a cycle \(oracle -> source_only -> oracle: each starts from the next one's "
            r"checkpoint\); remove one of its links",
        ),
        ({"oracle": "source_only"}, r"checkpoints_from of 'oracle' must map config keys to methods, got 'source_only'"),
        ({"oracle": {TEACHER: 3}}, r"checkpoints_from of 'oracle' must map config keys to methods"),
        ([["oracle", "source_only"]], r"checkpoints_from must map each method to \{config key: method\}"),
    ],
)
def test_checkpoints_from_mistakes_fail_in_one_line(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_registry(_registry(tmp_path, checkpoints_from=value))
    assert "\n" not in str(error.value)
