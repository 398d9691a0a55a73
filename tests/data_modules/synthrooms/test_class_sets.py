"""SynthRooms class sets (issue 14): ``classes="basic"`` samples are bit-identical to those published results were
measured on; ``classes="rich"`` has 11 classes, each object kind in only some views (informative image-level tags),
non-overlapping objects, and its own disk-cache folder, name and record."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from data_modules.synthrooms import (
    CLASS_NAMES,
    RICH_CLASS_NAMES,
    SynthRooms,
    SynthRoomsDataset,
    class_presence,
    render_sample,
)
from data_modules.synthrooms import disk_cache as dc
from data_modules.synthrooms import scene as sc

# sha256 (first 16 hex digits) of dtype, shape and bytes of each array of render_sample(seed, split, index, look, size),
# recorded with the generator before the rich class set existed (numpy 2.4.6, OpenCV 5.0.0, scikit-image 0.26.0).
BASIC_CHECKSUMS = {
    (0, "train", 0, "synthetic", 64): {
        "contours": "ee8f8fb34b333d2f",
        "depth": "df366f363b03a198",
        "image": "ffd7c3586ceabbd0",
        "normals": "04b65d9279e1c81a",
        "segmentation": "a0ccc1603fb63cf8",
        "camera": "91e0de68ee049adf",
    },
    (0, "train", 5, "real", 64): {
        "contours": "395ce86e7b98bcd2",
        "depth": "7403f9be4e4d3b2c",
        "image": "ab63098477420664",
        "normals": "c2b663f061a5e965",
        "segmentation": "68120f1ee3e76514",
        "camera": "ee27e8200cc33a26",
    },
    (1, "train", 3, "real", 64): {
        "contours": "898100f3b365d0ab",
        "depth": "758223562895c32a",
        "image": "e3f2b0cb8f882b55",
        "normals": "94e1d56aa15b76d3",
        "segmentation": "21721e7c8fe2d7b8",
        "camera": "c58d89c6bd04248c",
    },
    (1, "val", 2, "synthetic", 48): {
        "contours": "ee084c9a20c97c73",
        "depth": "c2b976275d074df0",
        "image": "7d5be3f53957a684",
        "normals": "917986c48949e6a7",
        "segmentation": "635e5ea26e4241da",
        "camera": "4b0a1852c2441aed",
    },
    (7, "test", 9, "real", 48): {
        "contours": "03eaefcdb263583a",
        "depth": "c9aa1c69cdfe70bc",
        "image": "7a35c8f19cfafd3d",
        "normals": "80a7080ab4b01569",
        "segmentation": "a8b043addd0152c3",
        "camera": "b5d433044d70ef0d",
    },
    (3, "test", 11, "synthetic", 64): {
        "contours": "02ab3a0ab6ee5f70",
        "depth": "cc1756ea28ae3a85",
        "image": "f8cbb3356a633e43",
        "normals": "ea467c59d4efc504",
        "segmentation": "ff4a57374c074e38",
        "camera": "31f933a56f222187",
    },
    (12345, "val", 1, "real", 48): {
        "contours": "665f6cb397ad9c7d",
        "depth": "6a254f093e559937",
        "image": "2e0096e57360764c",
        "normals": "19e35e0ca3f979ce",
        "segmentation": "c4c6853d254b4717",
        "camera": "4d85d5d14f1f861a",
    },
}
OBJECT_CLASSES = RICH_CLASS_NAMES[3:]


def _checksums(sample: dict[str, np.ndarray], camera) -> dict[str, str]:
    sums = {}
    for key in sorted(sample):
        array = np.ascontiguousarray(sample[key])
        sums[key] = hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()[:16]
    pose = np.array([camera.fx, camera.fy, camera.cx, camera.cy, *camera.rotation.ravel(), *camera.position])
    sums["camera"] = hashlib.sha256(pose.tobytes()).hexdigest()[:16]
    return sums


@pytest.mark.parametrize("combo", list(BASIC_CHECKSUMS), ids=lambda c: "-".join(map(str, c)))
def test_basic_samples_are_bit_identical_to_the_published_generator(combo):
    seed, split, index, look, size = combo
    assert _checksums(*render_sample(seed, split, index, look, size)) == BASIC_CHECKSUMS[combo]
    assert _checksums(*render_sample(seed, split, index, look, size, classes="basic")) == BASIC_CHECKSUMS[combo]


def test_basic_domain_is_unchanged():
    domain = SynthRooms("real", seed=1, image_size=32, train_size=3, val_size=2, test_size=1)
    assert domain.describe() == {
        "name": "synthrooms-real",
        "look": "real",
        "seed": 1,
        "image_size": [32, 32],
        "sizes": {"train": 3, "val": 2, "test": 1},
        "tasks": ["depth", "normals", "segmentation", "contours"],
    }
    assert domain.num_classes == SynthRooms.num_classes == 5 and domain.class_names == CLASS_NAMES
    assert (
        repr(domain) == "SynthRooms(look='real', seed=1, image_size=(32, 32), sizes={'train': 3, 'val': 2, 'test': 1})"
    )


def test_rich_domain_attributes_and_identity():
    assert RICH_CLASS_NAMES == (
        "floor", "wall", "ceiling", "table", "cabinet", "bed", "crate", "rug", "painting", "ball", "globe",
    )  # fmt: skip
    domain = SynthRooms("real", seed=1, image_size=32, train_size=3, val_size=2, test_size=1, classes="rich")
    assert domain.num_classes == len(domain.class_names) == 11 and domain.class_names == RICH_CLASS_NAMES
    assert domain.name == "synthrooms-real-rich" and "rich" in repr(domain)
    basic = SynthRooms("real", seed=1, image_size=32, train_size=3, val_size=2, test_size=1).describe()
    assert domain.describe() == {**basic, "name": "synthrooms-real-rich", "classes": "rich"}
    assert SynthRooms.num_classes == 5  # the class attributes stay basic
    sample = domain.dataset("test")[0]
    assert sample["image"].shape == (32, 32, 3) and sample["segmentation"].dtype == np.int64


@pytest.mark.parametrize(
    "make", [lambda: SynthRooms(classes="fancy"), lambda: render_sample(0, "train", 0, classes="fancy")]
)
def test_bad_class_set_raises_a_clear_error(make):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in ("classes", "'basic'", "'rich'", "'fancy'"))


@pytest.fixture(scope="module")
def rich_samples() -> list[tuple[dict, object]]:
    return [render_sample(4, "val", i, look, 64, "rich") for i in range(30) for look in ("synthetic", "real")]


def test_rich_samples_are_valid_and_show_every_class(rich_samples):
    seen = np.zeros(len(RICH_CLASS_NAMES), dtype=int)
    for sample, camera in rich_samples:
        seg = sample["segmentation"]
        assert seg.min() >= 0 and seg.max() < 11
        seen += np.bincount(seg.ravel(), minlength=11) > 0
        assert np.isfinite(sample["depth"]).all() and (sample["depth"] > 0).all()
        normals = sample["normals"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
        world = normals @ camera.rotation.T  # floors face up, ceilings down, walls sideways: the rug is no floor
        assert np.abs(world[seg == 0] - [0, 0, 1]).max(initial=0) < 1e-5
        assert np.abs(world[seg == 2] - [0, 0, -1]).max(initial=0) < 1e-5
        assert np.abs(world[seg == 1][:, 2]).max(initial=0) < 1e-5
        boundary = seg[:, 1:] != seg[:, :-1]  # contours still mark every class boundary
        assert (sample["contours"][:, 1:][boundary] == 1).all() and (sample["contours"][:, :-1][boundary] == 1).all()
    assert (seen >= 2).all(), dict(zip(RICH_CLASS_NAMES, seen))
    # Both looks show the same scenes.
    for (synthetic, _), (real, _) in zip(rich_samples[0::2], rich_samples[1::2]):
        np.testing.assert_array_equal(synthetic["segmentation"], real["segmentation"])


def test_rich_scenes_do_not_overlap():
    for index in range(150):
        scene = sc.sample_rich_scene(np.random.default_rng([0, 0, index, 0]))
        boxes, spheres, room = scene.boxes, scene.spheres, scene.room
        placed = []
        for center, half, yaw, kind in zip(boxes.center, boxes.half, boxes.yaw, boxes.kind):
            assert sc._box_clear(center, half, yaw, placed, margin=0.0)
            placed.append((center, half, yaw, kind))
            if kind == sc.PAINTING:  # hung on a wall, 1.2-1.9 m up
                assert 1.2 <= center[2] <= 1.9 and min(*center[:2], *(room[:2] - center[:2])) < 0.02
            elif kind == sc.RUG:  # on the floor, top 1-2 cm up
                assert center[2] == half[2] and 0.01 <= 2 * half[2] <= 0.02
            else:  # standing on the floor
                assert center[2] == half[2]
        for j, (center, radius, kind) in enumerate(zip(spheres.center, spheres.radius, spheres.kind)):
            others = np.arange(len(spheres.radius)) != j
            assert (np.linalg.norm(spheres.center[others] - center, axis=1) > spheres.radius[others] + radius).all()
            on = [k for k in range(len(boxes.yaw)) if _rests_on(center, radius, boxes, k)]
            assert center[2] == radius or (kind == sc.BALL and len(on) == 1 and boxes.kind[on[0]] in sc._SUPPORTS)
            for k in range(len(boxes.yaw)):  # clear of every box but the one it rests on
                box = sc.Boxes(boxes.center[k : k + 1], boxes.half[k : k + 1], boxes.yaw[k : k + 1])
                assert k in on or not sc._inside_box(center, box, radius)
        camera = scene.camera.position
        assert not sc._inside_box(camera, boxes, 0.1)
        assert (np.linalg.norm(spheres.center - camera, axis=1) > spheres.radius + 0.1).all()
        assert all(not sc._inside_box(light, boxes, 0.0) for light in scene.lights.position)


def _rests_on(center: np.ndarray, radius: float, boxes: sc.Boxes, k: int) -> bool:
    """Whether a sphere sits on top of box ``k``: its bottom on the top face, its centre above the face."""
    top = boxes.center[k, 2] + boxes.half[k, 2]
    below = sc.Boxes(boxes.center[k : k + 1], boxes.half[k : k + 1], boxes.yaw[k : k + 1])
    return bool(np.isclose(center[2] - radius, top) and sc._inside_box(center - [0, 0, radius + 1e-3], below, 0.0))


@pytest.mark.parametrize(("look", "seed"), [("synthetic", 0), ("real", 1)])  # the seeds of experiments/synthrooms
def test_object_classes_appear_in_some_views_but_not_all(look, seed):
    domain = SynthRooms(look, seed, 64, train_size=150, cache=False, disk_cache=False, classes="rich")
    presence = class_presence(domain, "train")
    assert list(presence) == list(RICH_CLASS_NAMES)
    assert presence["wall"] > 0.9
    for name in OBJECT_CLASSES:
        assert 0.15 <= presence[name] <= 0.8, (name, presence)
    basic = class_presence(SynthRooms(look, seed, 32, train_size=20, cache=False, disk_cache=False), count=10)
    assert list(basic) == list(CLASS_NAMES)


def test_rich_rooms_may_lack_boxes_or_spheres(monkeypatch):
    for kind in sc.RICH_FREQUENCY:
        monkeypatch.setitem(sc.RICH_FREQUENCY, kind, (0.0, 0.0))
    for look in ("synthetic", "real"):
        sample, _ = render_sample(0, "train", 0, look, 32, "rich")
        assert set(np.unique(sample["segmentation"])) <= {0, 1, 2}
    monkeypatch.setitem(sc.RICH_FREQUENCY, sc.GLOBE, (1.0, 0.0))  # spheres only
    scene = sc.sample_rich_scene(np.random.default_rng(0))
    assert len(scene.boxes.yaw) == 0 and len(scene.spheres.radius) == 1
    for look in ("synthetic", "real"):
        assert render_sample(0, "train", 1, look, 32, "rich")[0]["image"].shape == (32, 32, 3)


def test_disk_cache_keeps_class_sets_apart(tmp_path):
    basic = SynthRoomsDataset(7, "val", "real", (24, 20), 2, cache_dir=tmp_path)
    rich = SynthRoomsDataset(7, "val", "real", (24, 20), 2, cache_dir=tmp_path, classes="rich")
    assert basic._store.folder.name == "real-seed7-24x20" and rich._store.folder.name == "real-rich-seed7-24x20"
    basic[0]
    expected, _ = render_sample(7, "val", 0, "real", (24, 20), "rich")
    assert rich[0]["segmentation"].tobytes() == expected["segmentation"].tobytes()
    fresh = SynthRoomsDataset(7, "val", "real", (24, 20), 2, cache=False, cache_dir=tmp_path, classes="rich")
    assert fresh[0]["image"].tobytes() == expected["image"].tobytes()
    root = tmp_path / "synthrooms" / dc.generator_fingerprint()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npz")) == [
        "real-rich-seed7-24x20/val/0.npz",
        "real-seed7-24x20/val/0.npz",
    ]
