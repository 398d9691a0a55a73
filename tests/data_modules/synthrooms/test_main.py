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
