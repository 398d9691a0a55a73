"""``python -m data_modules.synthrooms`` (:mod:`data_modules.synthrooms.__main__`): the preview image and the
generation rate."""

from __future__ import annotations


def test_preview_and_generation_rate(tmp_path, capsys):
    from PIL import Image

    from data_modules.synthrooms import measure_generation_rate
    from data_modules.synthrooms.__main__ import main

    assert measure_generation_rate("real", 32, num_images=3) > 0
    out = tmp_path / "preview.png"
    main(["--out", str(out), "--n", "2", "--zoom", "1", "--rate-count", "2"])
    assert Image.open(out).size == (2 * 64, 6 * 64)
    printed = capsys.readouterr().out
    assert "synthetic look" in printed and "real look" in printed and "images/s" in printed


def test_presence_table_and_rich_preview(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from data_modules.synthrooms import RICH_CLASS_NAMES
    from data_modules.synthrooms.__main__ import main

    monkeypatch.setenv("UMADAPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    main(["--presence", "--classes", "rich", "--look", "real", "--seed", "1", "--count", "6", "--image-size", "32"])
    lines = capsys.readouterr().out.splitlines()
    assert "6 train images" in lines[0] and lines[1].split() == ["class", "real"]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == list(RICH_CLASS_NAMES) and all(0 <= float(row[1]) <= 1 for row in rows)
    main(["--presence", "--count", "4", "--image-size", "16"])  # basic, both looks
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["class", "synthetic", "real"] and len(lines) == 2 + 5
    assert not list(tmp_path.iterdir())  # a report: nothing cached on disk, no preview written

    out = tmp_path / "rich.png"
    main(["--out", str(out), "--n", "2", "--zoom", "1", "--rate-count", "1", "--classes", "rich", "--image-size", "32"])
    assert Image.open(out).size == (2 * 32, 6 * 32)
    assert "rich classes" in capsys.readouterr().out
