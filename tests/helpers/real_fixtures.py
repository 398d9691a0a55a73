"""Tiny copies of the real datasets, written in their exact on-disk formats (file names, folder layout, dtypes,
bit depths, MATLAB axis order), with values chosen so the tests can check the readers by hand.

``write_all(data_root)`` lays out every dataset under one ``DATA_ROOT`` the way the configs expect it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
from PIL import Image
from scipy.io import savemat


# ------------------------------------------------------------------------------------------------------ helpers
def _png8(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit PNG; ``array`` is ``[H, W]`` or ``[H, W, 3]`` with channels in file (RGB) order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, dtype=np.uint16)
    assert cv2.imwrite(str(path), array[..., ::-1] if array.ndim == 3 else array)


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------------ NYUD-v2
NYU_N, NYU_H, NYU_W = 4, 6, 8
#: raw NYU label ids placed in the label maps: 0 unlabelled, 21 wall, 11 floor, 3 cabinet, 5 chair.
NYU_RAW_IDS = (0, 21, 11, 3, 5)


def nyud_image(n: int) -> np.ndarray:
    """The ``[H, W, 3]`` uint8 image ``n`` of the .mat fixture."""
    h, w, c = np.meshgrid(np.arange(NYU_H), np.arange(NYU_W), np.arange(3), indexing="ij")
    return ((h * 20 + w * 3 + c * 50 + n * 7) % 256).astype(np.uint8)


def nyud_depth(n: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(NYU_H), np.arange(NYU_W), indexing="ij")
    return (1.0 + 0.1 * h + 0.01 * w + n).astype(np.float32)


def nyud_labels(n: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(NYU_H), np.arange(NYU_W), indexing="ij")
    labels = np.asarray(NYU_RAW_IDS, dtype=np.uint16)[(h + w + n) % len(NYU_RAW_IDS)]
    if n == 3:
        labels[0, 0] = 895  # outside the 894-class mapping
    return labels


def write_nyud_mat(root: Path) -> Path:
    """``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 writes it (HDF5 with a 512-byte MATLAB header userblock; arrays
    in MATLAB's column-major order, so h5py sees images ``(N, 3, W, H)`` and depths/labels ``(N, W, H)``) and the
    official-style ``splits.mat`` (MATLAB v5, column vectors of 1-based doubles)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle.create_dataset("images", data=np.stack([nyud_image(n).transpose(2, 1, 0) for n in range(NYU_N)]))
        handle.create_dataset("depths", data=np.stack([nyud_depth(n).T for n in range(NYU_N)]))
        handle.create_dataset("labels", data=np.stack([nyud_labels(n).T for n in range(NYU_N)]))
    with path.open("r+b") as handle:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        handle.write(text.ljust(116) + bytes(8) + b"\x00\x02" + b"IM")  # text, subsystem offset, version, endianness
    savemat(root / "splits.mat", {"trainNdxs": np.array([[1.0], [3.0]]), "testNdxs": np.array([[2.0], [4.0]])})
    return root


MTAN_H, MTAN_W = 24, 32


def mtan_sample(n: int) -> dict[str, np.ndarray]:
    """Sample ``n`` of the MTAN-format fixture: the floor (13-class index 4) fills the bottom half with normal
    ``(0, 1, 0)`` (y up, as in the NYU toolbox frame), the top half is wall (11) facing the camera ``(0, 0, -1)``."""
    rng = np.random.default_rng(n)
    image = rng.random((MTAN_H, MTAN_W, 3)).astype(np.float32)
    label = np.full((MTAN_H, MTAN_W), 11.0, dtype=np.float32)
    label[MTAN_H // 2 :] = 4.0
    label[0, :4] = -1.0
    normal = np.zeros((MTAN_H, MTAN_W, 3), dtype=np.float32)
    normal[: MTAN_H // 2, :, 2] = -1.0
    normal[MTAN_H // 2 :, :, 1] = 1.0
    depth = np.full((MTAN_H, MTAN_W, 1), 2.0 + n, dtype=np.float32)
    depth[0, 0, 0] = 0.0
    return {"image": image, "label": label, "depth": depth, "normal": normal}


def write_nyud_mtan(root: Path, train: int = 3, test: int = 2) -> Path:
    for split, count, offset in (("train", train, 0), ("val", test, 100)):
        for n in range(count):
            for key, value in mtan_sample(n + offset).items():
                path = root / split / key / f"{n}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, value)
    return root


# ------------------------------------------------------------------------------------------------------ Cityscapes
CS_H, CS_W = 8, 16
CS_BASELINE, CS_FX = 0.2, 2000.0
#: label IDs in the label maps: 7 road, 26 car, 0 unlabeled, 9 parking (ignored), 33 bicycle, 24 person.
CS_IDS = (7, 26, 0, 9, 33, 24)
#: raw disparity PNG values: 0 invalid, 1 (d = 0) invalid, 257 (d = 1 px), 25601 (d = 100 px).
CS_DISPARITY = (0, 1, 257, 25601)
CS_FILES = {
    "train": ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bochum/bochum_000000_000313"],
    "val": ["frankfurt/frankfurt_000000_000294", "lindau/lindau_000000_000019"],
}


def cityscapes_labels(k: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(CS_H), np.arange(CS_W), indexing="ij")
    return np.asarray(CS_IDS, dtype=np.uint8)[(h + w + k) % len(CS_IDS)]


def cityscapes_disparity(k: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(CS_H), np.arange(CS_W), indexing="ij")
    return np.asarray(CS_DISPARITY, dtype=np.uint16)[(w + k) % len(CS_DISPARITY)]


def write_cityscapes(root: Path) -> Path:
    for split, stems in CS_FILES.items():
        for k, stem in enumerate(stems):
            _png8(root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png", _rgb(CS_H, CS_W, k))
            _png8(root / "gtFine" / split / f"{stem}_gtFine_labelIds.png", cityscapes_labels(k))
            _png16(root / "disparity" / split / f"{stem}_disparity.png", cityscapes_disparity(k))
            camera = {
                "extrinsic": {
                    "baseline": CS_BASELINE,
                    "pitch": 0.038,
                    "roll": 0.0,
                    "x": 1.7,
                    "y": 0.1,
                    "yaw": -0.02,
                    "z": 1.18,
                },
                "intrinsic": {"fx": CS_FX, "fy": CS_FX, "u0": CS_W / 2, "v0": CS_H / 2},
            }
            path = root / "camera" / split / f"{stem}_camera.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(camera, indent=2))
    return root


# ------------------------------------------------------------------------------------------------------ GTA5
GTA_H, GTA_W, GTA_N = 10, 18, 4


def gta5_labels(k: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(GTA_H), np.arange(GTA_W), indexing="ij")
    return np.asarray(CS_IDS, dtype=np.uint8)[(2 * h + w + k) % len(CS_IDS)]


def write_gta5(root: Path) -> Path:
    """``images/NNNNN.png`` and palette ``labels/NNNNN.png`` whose indices are Cityscapes label IDs; the palette's
    colours are not the IDs, so a reader that decodes colours would fail the tests."""
    palette = np.random.default_rng(7).integers(0, 256, 256 * 3).astype(np.uint8).tolist()
    for k in range(GTA_N):
        _png8(root / "images" / f"{k + 1:05d}.png", _rgb(GTA_H, GTA_W, 10 + k))
        label = Image.fromarray(gta5_labels(k), mode="P")
        label.putpalette(palette)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        label.save(root / "labels" / f"{k + 1:05d}.png")
    return root


# ------------------------------------------------------------------------------------------------------ SYNTHIA
SYN_H, SYN_W, SYN_N = 12, 20, 4
#: SYNTHIA class IDs in the label maps: 3 road, 8 car, 21 wall, 16 terrain (not in the 16-class protocol),
#: 0 void, 22 lanemarking (ignored).
SYN_IDS = (3, 8, 21, 16, 0, 22)


def synthia_ids(k: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(SYN_H), np.arange(SYN_W), indexing="ij")
    return np.asarray(SYN_IDS, dtype=np.uint16)[(h + 3 * w + k) % len(SYN_IDS)]


def synthia_depth_cm(k: int) -> np.ndarray:
    h, w = np.meshgrid(np.arange(SYN_H), np.arange(SYN_W), indexing="ij")
    return (100 * (1 + h) + w + k).astype(np.uint16)


def write_synthia(root: Path) -> Path:
    """``RGB/``, ``GT/LABELS/`` (16-bit, 3 channels: class ID, instance ID, 0) and ``Depth/`` (16-bit centimetres)."""
    for k in range(SYN_N):
        name = f"{k:07d}.png"
        _png8(root / "RGB" / name, _rgb(SYN_H, SYN_W, 20 + k))
        instance = np.full((SYN_H, SYN_W), 1000 + k, dtype=np.uint16)
        _png16(root / "GT" / "LABELS" / name, np.stack([synthia_ids(k), instance, np.zeros_like(instance)], -1))
        _png16(root / "Depth" / name, synthia_depth_cm(k))
    return root


# ------------------------------------------------------------------------------------------------------ Office
OFFICE31_CLASSES = (
    "back_pack",
    "bike",
    "bike_helmet",
    "bookcase",
    "bottle",
    "calculator",
    "desk_chair",
    "desk_lamp",
    "desktop_computer",
    "file_cabinet",
    "headphones",
    "keyboard",
    "laptop_computer",
    "letter_tray",
    "mobile_phone",
    "monitor",
    "mouse",
    "mug",
    "paper_notebook",
    "pen",
    "phone",
    "printer",
    "projector",
    "punchers",
    "ring_binder",
    "ruler",
    "scissors",
    "speaker",
    "stapler",
    "tape_dispenser",
    "trash_can",
)
OFFICEHOME_CLASSES = tuple(f"Class_{i:02d}" for i in range(65))


def _class_image(label: int, k: int) -> np.ndarray:
    """A flat image whose grey level encodes the class (so a test can check image <-> label)."""
    return np.full((8, 8, 3), 3 * label + k, dtype=np.uint8)


def _write_class_folders(domain_dir: Path, classes: tuple[str, ...], per_class: int) -> None:
    for label, name in enumerate(classes):
        folder = domain_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            assert cv2.imwrite(
                str(folder / f"frame_{k:04d}.jpg"), _class_image(label, k), [cv2.IMWRITE_JPEG_QUALITY, 100]
            )


def write_office31(root: Path, per_class: int = 1) -> Path:
    for domain in ("amazon", "dslr", "webcam"):
        _write_class_folders(root / domain / "images", OFFICE31_CLASSES, per_class)
    return root


def write_officehome(root: Path, per_class: int = 1) -> Path:
    for domain in ("Art", "Clipart", "Product", "Real World"):
        _write_class_folders(root / domain, OFFICEHOME_CLASSES, per_class)
    return root


# ------------------------------------------------------------------------------------------------------ folder format
NYU13 = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
FOLDER_H, FOLDER_W = 16, 24


def write_folder(root: Path, count: int = 6, classes: tuple[str, ...] = NYU13) -> Path:
    """A simulator's output in the folder format: PNG images, 16-bit millimetre depth, (n+1)/2*255 normal PNGs,
    class-ID segmentation PNGs and ``classes.txt``. Top half: wall (11) facing the camera, bottom: floor (4)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for k in range(count):
        name = f"frame_{k:03d}"
        _png8(root / "images" / f"{name}.png", _rgb(FOLDER_H, FOLDER_W, 40 + k))
        depth_mm = np.full((FOLDER_H, FOLDER_W), 1500 + 100 * k, dtype=np.uint16)
        depth_mm[0, 0] = 0
        _png16(root / "depth" / f"{name}.png", depth_mm)
        normals = np.zeros((FOLDER_H, FOLDER_W, 3), dtype=np.float32)
        normals[: FOLDER_H // 2, :, 2] = -1.0
        normals[FOLDER_H // 2 :, :, 1] = -1.0
        _png8(root / "normals" / f"{name}.png", np.rint((normals + 1.0) / 2.0 * 255.0))
        seg = np.full((FOLDER_H, FOLDER_W), 11, dtype=np.uint8)
        seg[FOLDER_H // 2 :] = 4
        seg[0, :2] = 255
        _png8(root / "segmentation" / f"{name}.png", seg)
    return root


def write_all(data_root: Path) -> Path:
    """Every dataset under ``data_root`` in the folders the readers default to."""
    write_nyud_mat(data_root / "NYUDv2")
    write_nyud_mtan(data_root / "NYUDv2_MTAN")
    write_cityscapes(data_root / "Cityscapes")
    write_gta5(data_root / "GTA5")
    write_synthia(data_root / "RAND_CITYSCAPES")
    write_office31(data_root / "Office31")
    write_officehome(data_root / "OfficeHome")
    write_folder(data_root / "sim_nyud")
    return data_root


# ------------------------------------------------------------------------------------------------------ your own data
OWN_DOMAINS = ("my_sim", "my_camera")
"""The source and target folders of experiments/own_data/ under DATA_ROOT."""
OWN_CLASSES = ("plate", "cup", "mug")  # not sorted: the classes layout sorts the folder names


def write_own_data(data_root: Path, layout: str = "dense", count: int = 6) -> Path:
    """Both domains of experiments/own_data/ under ``data_root`` in the documented folder format: ``dense``
    (``images/``, ``depth/``, ``normals/``, ``segmentation/``, ``classes.txt``; ``count`` samples) or ``classes``
    (``<class>/<image>.jpg``, 2 per class of :data:`OWN_CLASSES`, grey level ``3 * sorted class index + k``)."""
    for name in OWN_DOMAINS:
        if layout == "dense":
            write_folder(data_root / name, count=count)
        else:
            _write_class_folders(data_root / name, tuple(sorted(OWN_CLASSES)), per_class=2)
    return data_root


def write_garbage(path: Path) -> Path:
    """Overwrite ``path`` with bytes that are no image (a truncated download, a half-written render)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return path
