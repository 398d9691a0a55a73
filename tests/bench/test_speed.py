"""The speed benchmark: its timing rule, its model and data built from the shipped YAML, and an end-to-end run at
toy size whose numbers agree with each other."""

from __future__ import annotations

import re

import pytest
import yaml

from umadapt.bench import speed
from umadapt.bench.registry import REGISTRY_PATH

SYNTHROOMS = REGISTRY_PATH.parent / "synthrooms"


def test_median_step_uses_intervals_between_step_starts_after_warmup():
    stamps = [0.0, 5.0, 6.0, 7.0, 8.5, 9.5, 30.0]  # one slow warm-up step, one step slowed by other work
    assert speed.median_step(stamps, warmup=1) == 1.0  # intervals 1, 1, 1.5, 1, 20.5 -> median 1
    with pytest.raises(ValueError, match="more than 6 steps"):
        speed.median_step(stamps, warmup=6)


def test_model_and_data_come_from_the_shipped_yaml(tmp_path):
    assert speed.config_files() == [SYNTHROOMS / "base.yaml", SYNTHROOMS / "source_only.yaml"]
    shipped = yaml.safe_load((SYNTHROOMS / "base.yaml").read_text())
    encoder = shipped["model"]["init_args"]["encoder"]["init_args"]
    model, datamodule = speed.build(["--data.init_args.batch_size=2"])
    assert type(model).__name__ == "SourceOnly" and list(model.tasks) == shipped["data"]["init_args"]["tasks"]
    assert (model.encoder.arch, model.encoder.width) == (encoder["arch"], encoder["width"])
    assert datamodule.batch_size == 2

    edited = yaml.safe_load((SYNTHROOMS / "base.yaml").read_text())  # the same config with another encoder width
    edited["model"]["init_args"]["encoder"]["init_args"]["width"] = 8
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(edited))
    narrow, _ = speed.build(configs=[tmp_path / "base.yaml", SYNTHROOMS / "source_only.yaml"])
    assert narrow.encoder.width == 8
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_speed_report_numbers_agree_with_each_other(tmp_path):
    out = tmp_path / "speed.md"
    sizes = ["--steps", "4", "--warmup", "1", "--repeats", "2", "--batch-size", "2", "--pipeline-images", "8"]
    speed.main(["--out", str(out), *sizes])
    text = out.read_text()
    assert "--steps 4" in text
    assert "`experiments/synthrooms/base.yaml` + `experiments/synthrooms/source_only.yaml`" in text
    assert "`experiments/digits/base.yaml` + `experiments/digits/source_only.yaml`" in text
    overheads = dict(re.findall(r"(SynthRooms|Digits) \*\*([+-]\d+\.\d) %\*\*", text))
    assert re.search(r"Logging every step's values instead: SynthRooms [+-]\d+\.\d %, Digits [+-]\d+\.\d %", text)
    assert len(re.findall(r"\| (?:SynthRooms|Digits) \| Lightning, every step's values logged", text)) == 2
    assert set(overheads) == {"SynthRooms", "Digits"}
    rates = {}
    for model in ("SynthRooms", "Digits"):
        steps = {}
        for loop in ("Lightning `Trainer.fit`", "bare PyTorch"):
            row = re.search(rf"\| {model} \| {re.escape(loop)} \| (\d+\.\d+) \| ([\d., ]+) \| (\d+) \|", text)
            step, runs, rate = float(row.group(1)), [float(x) for x in row.group(2).split(", ")], int(row.group(3))
            assert len(runs) == 2 and step == pytest.approx(sum(runs) / 2, abs=1e-4)  # the median of 2 runs
            assert rate == pytest.approx(2 / step, rel=0.02, abs=1)
            steps[loop] = step
            if loop.startswith("Lightning"):
                rates[model] = rate
        l_step, b_step = steps.values()
        rounding = 100 * 0.5e-4 * (1 + l_step / b_step) / b_step + 0.05  # s/step has 4 decimals, the overhead 1
        assert float(overheads[model]) == pytest.approx(100 * (l_step - b_step) / b_step, abs=rounding)
    consumed = int(re.search(r"\| training consumes \(source \+ target per step\) \| (\d+) \|", text).group(1))
    assert consumed == pytest.approx(2 * rates["SynthRooms"], rel=0.02, abs=1)
    pipeline = re.findall(r"\| 0 workers, (?:first pass|a fresh data module)[^|]*\| (\d+) \|", text)
    assert len(pipeline) == 2 and all(int(r) > 0 for r in pipeline)
    peaks = re.findall(r"\| (\d+) \| (\d+) \| (-?\d+) \|", text)
    assert len(peaks) == 4 and all(int(b) >= int(a) > 0 and abs(int(c) - (int(b) - int(a))) <= 1 for a, b, c in peaks)
    changes = re.findall(r"\| (\d+\.(\d+)) (?:ms|s) \| (\d+\.\d+) (?:ms|s) \| ([+-]\d+) % \|", text)
    assert len(changes) == 6  # 3 reductions, channels-last on 2 models, threads
    for before, decimals, after, change in changes:
        # The change is computed from the unrounded times: any times within half a unit of the printed ones' last
        # digit (a Digits step printed as 0.0024 s has two significant digits), and the percentage's own rounding.
        h = 0.5 * 10.0 ** -len(decimals)
        b, a = float(before), float(after)
        lowest, highest = 100 * ((a - h) / (b + h) - 1) - 0.5, 100 * ((a + h) / (b - h) - 1) + 0.5
        assert lowest <= int(change) <= highest, (before, after, change)
    validation = r"One validation pass .* takes \d+\.\d\d s, \d+ % of a training epoch of the shipped config \(1000 "
    assert re.search(validation, text), "2000 images per domain in batches of 2: 1000 steps per epoch"
