"""The speed benchmark (issue 6): its timing rule and an end-to-end run at toy size."""

from __future__ import annotations

import re

import pytest

from umadapt.bench_speed import median_step


def test_median_step_uses_intervals_between_step_starts_after_warmup():
    stamps = [0.0, 5.0, 6.0, 7.0, 8.5, 9.5, 30.0]  # one slow warm-up step, one step slowed by other work
    assert median_step(stamps, warmup=1) == 1.0  # intervals 1, 1, 1.5, 1, 20.5 -> median 1
    with pytest.raises(ValueError, match="more than 6 steps"):
        median_step(stamps, warmup=6)


@pytest.mark.slow
def test_bench_speed_writes_every_part(tmp_path):
    from umadapt.bench_speed import main

    out = tmp_path / "speed.md"
    main(["--out", str(out), "--steps", "4", "--warmup", "1", "--repeats", "1", "--batch-size", "2",
          "--pipeline-images", "8"])  # fmt: skip
    text = out.read_text()
    overhead = re.search(r"Framework overhead: \*\*([+-]\d+\.\d) %\*\*", text)
    assert overhead is not None and abs(float(overhead.group(1))) < 500
    for row in ("| Lightning `Trainer.fit` |", "| bare PyTorch |", "| 0 workers |", "| 2 workers |",
                "| data pipeline, 2 workers (main process only) |"):  # fmt: skip
        assert row in text, row
    peaks = re.findall(r"\| (\d+) \| (\d+) \| (-?\d+) \|", text)
    assert len(peaks) == 4 and all(int(b) >= int(a) > 0 for a, b, _ in peaks)
    assert "--steps 4" in text  # the command that made it
