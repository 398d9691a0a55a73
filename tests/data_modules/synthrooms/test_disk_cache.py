"""The SynthRooms disk cache (:mod:`data_modules.synthrooms.disk_cache`): later instances read instead of rendering,
bad files are re-rendered, the generator fingerprint keys the folder, failures to write only warn, DataLoader
workers fill it, and ``python -m data_modules.synthrooms --cache-info / --clear-cache``."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from data_modules.synthrooms import SynthRooms, SynthRoomsDataset, domain, render_sample
from data_modules.synthrooms import disk_cache as dc
from data_modules.synthrooms.__main__ import main

KEYS = ("image", "depth", "normals", "segmentation", "contours")
SHAPE = (24, 20)


def _expected(look: str, seed: int, split: str, n: int, shape=SHAPE) -> list[dict[str, np.ndarray]]:
    return [render_sample(seed, split, i, look, shape)[0] for i in range(n)]


def _assert_identical(sample: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for key in KEYS:
        assert sample[key].dtype == expected[key].dtype and sample[key].shape == expected[key].shape, key
        assert sample[key].tobytes() == expected[key].tobytes(), key


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _forbid_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("rendered a sample the disk cache holds")

    monkeypatch.setattr(domain, "_render_stored", fail)


def _count_renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = domain._render_stored

    def spy(seed, split, index, look, shape, *rest):
        calls.append(index)
        return original(seed, split, index, look, shape, *rest)

    monkeypatch.setattr(domain, "_render_stored", spy)
    return calls


def test_fresh_instance_reads_every_sample_from_disk(tmp_path, monkeypatch):
    expected = _expected("real", 7, "val", 4)
    first = SynthRoomsDataset(7, "val", "real", SHAPE, 4, cache_dir=tmp_path)
    for i in range(4):
        _assert_identical(first[i], expected[i])
    folder = tmp_path / "synthrooms" / dc.generator_fingerprint() / "real-seed7-24x20" / "val"
    assert [p.name for p in _files(tmp_path)] == [f"{i}.npz" for i in range(4)]
    assert all(p.parent == folder for p in _files(tmp_path))

    _forbid_rendering(monkeypatch)
    second = SynthRoomsDataset(7, "val", "real", SHAPE, 4, cache=False, cache_dir=tmp_path)
    clone = pickle.loads(pickle.dumps(SynthRoomsDataset(7, "val", "real", SHAPE, 4, cache_dir=tmp_path)))
    for i in (3, 0, 1, 2):
        _assert_identical(second[i], expected[i])
        _assert_identical(clone[i], expected[i])
    # The split's size is not part of the key: a larger split reuses the first samples.
    _assert_identical(SynthRoomsDataset(7, "val", "real", SHAPE, 100, cache_dir=tmp_path)[2], expected[2])


def test_domain_uses_the_environment_cache_dir_and_keeps_its_identity(monkeypatch, tmp_path):
    monkeypatch.setenv("UMADAPT_CACHE_DIR", str(tmp_path / "env"))
    plain = SynthRooms("synthetic", seed=3, image_size=16, train_size=2, val_size=2, test_size=2)
    cached = SynthRooms("synthetic", seed=3, image_size=16, train_size=2, val_size=2, test_size=2, cache_dir="/x")
    assert plain.describe() == cached.describe() and "cache_dir" not in str(plain.describe())
    plain.dataset("test")[1]
    store = tmp_path / "env" / "synthrooms" / dc.generator_fingerprint() / "synthetic-seed3-16x16"
    assert _files(tmp_path) == [store / "test" / "1.npz"]
    assert dc.default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("UMADAPT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dc.default_cache_dir() == tmp_path / "xdg" / "umadapt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dc.default_cache_dir() == Path.home() / ".cache" / "umadapt"


def test_bad_files_are_rerendered_and_rewritten(tmp_path, monkeypatch):
    expected = _expected("synthetic", 2, "train", 4)
    dataset = SynthRoomsDataset(2, "train", "synthetic", SHAPE, 4, cache_dir=tmp_path)
    for i in range(4):
        dataset[i]
    store = dataset._store
    good_size = store.path("train", 0).stat().st_size
    truncated = store.path("train", 0)
    truncated.write_bytes(truncated.read_bytes()[: good_size // 2])
    store.path("train", 1).write_bytes(b"not an npz file")
    stored = store.load("train", 2)
    np.savez(store.path("train", 2), **dict(zip(dc.KEYS, stored[:1] + (stored[1].astype(np.float64),) + stored[2:])))
    flipped = bytearray(store.path("train", 3).read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside an array: only the zip member's CRC-32 can tell
    store.path("train", 3).write_bytes(bytes(flipped))
    assert all(store.load("train", i) is None for i in range(4))

    renders = _count_renders(monkeypatch)
    fresh = SynthRoomsDataset(2, "train", "synthetic", SHAPE, 4, cache_dir=tmp_path)
    for i in range(4):
        _assert_identical(fresh[i], expected[i])
    assert sorted(renders) == [0, 1, 2, 3]
    assert all(store.path("train", i).stat().st_size == good_size for i in range(4))
    _forbid_rendering(monkeypatch)
    again = SynthRoomsDataset(2, "train", "synthetic", SHAPE, 4, cache_dir=tmp_path)
    for i in range(4):
        _assert_identical(again[i], expected[i])
    assert not [p for p in _files(tmp_path) if p.suffix != ".npz"]  # no temporary files left behind


def test_fingerprint_keys_the_folder(tmp_path, monkeypatch):
    fingerprint = dc.generator_fingerprint()
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert dc.generator_fingerprint.__wrapped__() == fingerprint
    monkeypatch.setattr(np, "__version__", "0.0.0")
    assert dc.generator_fingerprint.__wrapped__() != fingerprint
    monkeypatch.undo()
    monkeypatch.setattr(dc, "GENERATOR_FILES", dc.GENERATOR_FILES[:-1])
    assert dc.generator_fingerprint.__wrapped__() != fingerprint
    monkeypatch.undo()

    SynthRoomsDataset(4, "test", "real", SHAPE, 2, cache_dir=tmp_path)[0]
    monkeypatch.setattr(dc, "generator_fingerprint", lambda: "0123456789abcdef")
    renders = _count_renders(monkeypatch)
    SynthRoomsDataset(4, "test", "real", SHAPE, 2, cache_dir=tmp_path)[0]
    assert renders == [0]
    assert {p.relative_to(tmp_path / "synthrooms").parts[0] for p in _files(tmp_path)} == {
        fingerprint,
        "0123456789abcdef",
    }


def test_disk_cache_off_writes_nothing(tmp_path):
    dataset = SynthRoomsDataset(1, "val", "synthetic", SHAPE, 2, disk_cache=False, cache_dir=tmp_path)
    dataset[0], dataset[1]
    SynthRooms(seed=1, image_size=16, val_size=2, disk_cache=False, cache_dir=str(tmp_path)).dataset("val")[0]
    assert _files(tmp_path) == [] and not (tmp_path / "synthrooms").exists()


def test_unwritable_cache_warns_once_and_still_serves_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(dc, "_warned_unwritable", False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder below a file cannot be created, even by root
    expected = _expected("real", 5, "train", 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            dataset = SynthRoomsDataset(5, "train", "real", SHAPE, 3, cache_dir=blocker / "cache")
            for i in range(3):
                _assert_identical(dataset[i], expected[i])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "disk cache" in messages[0] and "a_file" in messages[0]

    monkeypatch.setattr(dc, "_warned_unwritable", False)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dc.np, "savez", disk_full)
    with pytest.warns(RuntimeWarning, match="No space left"):
        _assert_identical(SynthRoomsDataset(5, "train", "real", SHAPE, 3, cache_dir=tmp_path / "full")[1], expected[1])
    assert _files(tmp_path / "full") == []  # the temporary file is removed


def test_dataloader_workers_fill_the_disk_cache(tmp_path, monkeypatch):
    dataset = SynthRoomsDataset(9, "train", "synthetic", (16, 16), 6, cache_dir=tmp_path)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert len(batches) == 3
    assert dataset._cache == {}  # the parent rendered nothing: the workers did, and wrote to disk
    assert [p.name for p in _files(tmp_path)] == sorted(f"{i}.npz" for i in range(6))
    _forbid_rendering(monkeypatch)
    fresh = SynthRoomsDataset(9, "train", "synthetic", (16, 16), 6, cache_dir=tmp_path)
    for i in range(6):
        np.testing.assert_array_equal(fresh[i]["depth"], batches[i // 2]["depth"][i % 2].numpy())


def test_cache_info_and_clear_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UMADAPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    dataset = SynthRoomsDataset(0, "val", "synthetic", (16, 16), 3)
    for i in range(3):
        dataset[i]
    stale = tmp_path / "cache" / "synthrooms" / "ffffffffffffffff" / "real-seed0-16x16" / "val"
    stale.mkdir(parents=True)
    (stale / "0.npz").write_bytes(b"x" * 1000)
    fingerprint = dc.generator_fingerprint()

    main(["--cache-info"])
    info = capsys.readouterr().out
    assert str(tmp_path / "cache" / "synthrooms") in info and fingerprint in info
    lines = {line.split(":")[0].strip(): line for line in info.splitlines()}
    assert "3 files" in lines[fingerprint] and "stale" not in lines[fingerprint]
    assert "1 files" in lines["ffffffffffffffff"] and "(stale)" in lines["ffffffffffffffff"]
    assert not (tmp_path / "preview.png").exists()

    main(["--clear-cache"])
    cleared = capsys.readouterr().out
    assert "removed" in cleared and "4 files" in cleared and str(tmp_path / "cache" / "synthrooms") in cleared
    assert not (tmp_path / "cache" / "synthrooms").exists() and (tmp_path / "cache").is_dir()
    main(["--cache-info", "--cache-dir", str(tmp_path / "cache")])
    assert "no cached samples" in capsys.readouterr().out
    main(["--clear-cache", "--cache-dir", str(tmp_path / "cache")])
    assert "nothing cached" in capsys.readouterr().out
    assert os.listdir(tmp_path / "cache") == []
