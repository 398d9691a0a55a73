"""A domain seen through a trained image translator (:mod:`data_modules.translated`, CyCADA's task stage): translated
images with the original labels, augmented together afterwards, and clear errors for a checkpoint that is not a
translator or a translator of another image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from data_modules import PairedDataModule
from data_modules.augment import AUGMENTATION_PRESETS
from data_modules.translated import TranslatedDomain
from tests.helpers import ToyDomain, tiny_model
from umadapt.errors import ConfigError
from umadapt.pixel import ResnetGenerator, Translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 16
TASKS = ["depth", "normals", "segmentation"]


class _Slanted(Dataset):
    """A toy split whose normals lean left to right (non-zero, varying x component), so that a flip that forgot to
    negate n_x, or flipped the image but not the normals, shows."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.base[index])
        h, w = sample["depth"].shape
        raw = np.stack(np.broadcast_arrays(np.linspace(-0.5, 0.9, w)[None, :], 0.2, -1.0), -1)
        raw = np.broadcast_to(raw, (h, w, 3))
        sample["normals"] = (raw / np.linalg.norm(raw, axis=-1, keepdims=True)).astype(np.float32)
        return sample


class SlantedDomain(ToyDomain):
    def dataset(self, split: str) -> Dataset:
        return _Slanted(super().dataset(split))


class CountingTranslator(Translator):
    """A translator that counts the batches it translates."""

    calls = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().__call__(images)


def _translator(image_size: tuple[int, int] | None = (SIZE, SIZE)) -> CountingTranslator:
    torch.manual_seed(0)  # a random generator: not the identity, and not flip-equivariant
    return CountingTranslator(
        ResnetGenerator(width=4, downsamples=1, blocks=1), image_size, "t.ckpt", "source_to_target"
    )


def _flipped(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a horizontal flip makes of a tensor sample: every map mirrored, the normals' x component negated."""
    out = {key: value.flip(-1) for key, value in sample.items()}
    out["normals"] = out["normals"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
    return out


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_translated_samples_are_the_translations_with_the_original_labels():
    domain = SlantedDomain(seed=0, image_size=SIZE, size=5)
    translator = _translator()
    translated = TranslatedDomain(domain, translator, batch_size=2)
    assert (translated.tasks, translated.num_classes, translated.image_size) == (
        domain.tasks,
        domain.num_classes,
        domain.image_size,
    )
    assert translated.describe()["translator"] == "t.ckpt" and "(translated)" in translated.describe()["name"]
    base, served = domain.dataset("val"), translated.dataset("val")
    assert len(served) == len(base) == 5
    assert translator.calls == 3, "5 images translated in batches of 2"
    assert served.images.dtype == np.uint8, "translations are kept as 8-bit images (bounded memory)"
    for index in range(len(base)):
        original, sample = base[index], served[index]
        with torch.no_grad():
            expected = translator(torch.from_numpy(original["image"]).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
        np.testing.assert_allclose(sample["image"], expected.numpy(), atol=0.5 / 255 + 1e-6)  # kept as 8-bit images
        assert sample["image"].dtype == np.float32 and 0.0 <= sample["image"].min() <= sample["image"].max() <= 1.0
        assert not np.allclose(sample["image"], original["image"], atol=1e-2), "the image is translated"
        for key in ("depth", "normals", "segmentation", "contours"):
            np.testing.assert_array_equal(sample[key], original[key])
    calls = translator.calls
    assert translated.dataset("val") is served and translator.calls == calls, "a split is translated once, then kept"


def test_flips_move_the_translated_image_and_its_labels_together():
    """With the data module's ``hflip``, the served sample (``(index, seed)``, as the seeded sampler asks for it) is
    either the un-augmented translated sample or its mirror image: image, depth, segmentation and normals flipped
    together, the normals' x negated. Both happen over a few seeds."""
    dm = PairedDataModule(
        TranslatedDomain(SlantedDomain(seed=0, image_size=SIZE, size=4), _translator()),
        ToyDomain(seed=1, image_size=SIZE, size=4, shift=0.3),
        tasks=TASKS,
        batch_size=2,
        augmentation="hflip",
    )
    train, plain = dm.train_dataset("source"), dm.eval_dataset("source", "train")
    outcomes = []
    for index in range(len(plain)):
        unaugmented = plain[index]
        assert not _equal(unaugmented, _flipped(unaugmented)), "the test sample must not be mirror-symmetric"
        for seed in range(8):
            served = train[(index, seed)]
            if _equal(served, unaugmented):
                outcomes.append("kept")
            else:
                assert _equal(served, _flipped(unaugmented)), f"sample {index}, seed {seed}: neither kept nor flipped"
                outcomes.append("flipped")
        assert _equal(plain[index], unaugmented), "augmentation changed the kept translation in place"
    assert {"kept", "flipped"} == set(outcomes)


@pytest.mark.parametrize("preset", AUGMENTATION_PRESETS)
def test_augmenting_served_samples_never_changes_the_kept_translations(preset):
    """The translations are computed once and served as views of one array (the first domain that keeps its images):
    an augmentation (or edge map) that worked in place would change every later epoch's images."""
    translated = TranslatedDomain(SlantedDomain(seed=0, image_size=SIZE, size=4), _translator())
    target = ToyDomain(seed=1, image_size=SIZE, size=4)
    dm = PairedDataModule(translated, target, batch_size=2, augmentation=preset, image_edges="sobel")
    kept = translated.dataset("train").images.copy()
    train = dm.train_dataset("source")
    for index in range(len(train)):
        for seed in range(6):
            train[(index, seed)]
    np.testing.assert_array_equal(translated.dataset("train").images, kept)


def test_a_translator_of_another_image_size_is_refused_naming_both_sizes():
    with pytest.raises(ConfigError, match=r"trained on 16x16 images, but the domain 'toy-0' has 32x32"):
        TranslatedDomain(ToyDomain(seed=0, image_size=32), _translator((16, 16)))
    TranslatedDomain(ToyDomain(seed=0, image_size=32), _translator(None))  # a translator that does not say: allowed


def test_a_checkpoint_that_is_not_a_translator_is_refused(tmp_path, toy_domains):
    """A source-only checkpoint passed as data.init_args.source_translator: named, with its method, and what to pass
    instead; a missing file is named too."""
    model = tiny_model(width=4)
    path = tmp_path / "source_only.ckpt"
    torch.save({"state_dict": model.state_dict(), "umadapt": model.identity()}, path)
    with pytest.raises(ConfigError, match=r"source_only\.ckpt' is not an image translator \(its method: SourceOnly\)"):
        PairedDataModule(*toy_domains, source_translator=str(path))
    with pytest.raises(ConfigError, match=r"data\.init_args\.source_translator not found: '.*missing\.ckpt'"):
        PairedDataModule(*toy_domains, source_translator=str(tmp_path / "missing.ckpt"))
