"""Preview SynthRooms and measure its generation rate; inspect or clear its disk cache.

``python -m data_modules.synthrooms --out preview.png --n 6`` writes a grid (rows: synthetic image, real image,
depth, normals, segmentation, contours; one column per scene) and prints images/s for both looks.
``--cache-info`` prints the disk cache's folder and, per generator fingerprint, its files and size (stale ones
marked); ``--clear-cache`` removes every cached sample (``--cache-dir``: another cache folder than the default).
``--classes rich`` previews (and times) the rich class set; ``--presence --classes rich --look real --seed 1 --count
500`` prints, per class, the fraction of train images showing it (both looks without ``--look``).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from .disk_cache import cache_summary, clear_cache, generator_fingerprint, synthrooms_root
from .domain import SynthRooms, class_presence, measure_generation_rate, render_sample
from .looks import LOOKS
from .scene import CLASS_SETS

_PALETTE = np.array([(0.55, 0.35, 0.2), (0.6, 0.75, 0.9), (0.95, 0.95, 0.6), (0.85, 0.25, 0.25), (0.3, 0.8, 0.3)])
_RICH_PALETTE = np.array(
    [
        *_PALETTE[:3],  # floor, wall, ceiling
        *[(0.3, 0.8, 0.3), (0.2, 0.3, 0.85), (0.85, 0.25, 0.25), (0.95, 0.6, 0.1)],  # table, cabinet, bed, crate
        *[(0.6, 0.25, 0.7), (0.1, 0.75, 0.75), (1.0, 1.0, 0.1), (0.95, 0.95, 0.95)],  # rug, painting, ball, globe
    ]
)
_DEPTH_MAP = np.array(  # viridis-like, near = dark
    [(0.27, 0.0, 0.33), (0.23, 0.32, 0.55), (0.13, 0.57, 0.55), (0.37, 0.79, 0.38), (0.99, 0.91, 0.14)]
)


def _colour_depth(depth: np.ndarray, max_depth: float = 8.0) -> np.ndarray:
    x = np.clip(depth / max_depth, 0, 1) * (len(_DEPTH_MAP) - 1)
    return np.stack([np.interp(x, np.arange(len(_DEPTH_MAP)), _DEPTH_MAP[:, c]) for c in range(3)], axis=-1)


def preview_rows(seed: int, n: int, image_size: int, split: str = "val", classes: str = "basic") -> np.ndarray:
    """``(6 * H, n * W, 3)`` float grid of ``n`` scenes."""
    palette = _RICH_PALETTE if classes == "rich" else _PALETTE
    columns = []
    for index in range(n):
        synthetic, _ = render_sample(seed, split, index, "synthetic", image_size, classes)
        real, _ = render_sample(seed, split, index, "real", image_size, classes)
        tiles = [
            synthetic["image"],
            real["image"],
            _colour_depth(synthetic["depth"]),
            synthetic["normals"] * 0.5 + 0.5,
            palette[synthetic["segmentation"]],
            np.repeat(synthetic["contours"][..., None], 3, axis=2),
        ]
        columns.append(np.concatenate(tiles, axis=0))
    return np.concatenate(columns, axis=1)


def print_cache_info(cache_dir: str | None = None) -> None:
    """The cache folder, the current fingerprint and each fingerprint folder's files and MB (stale ones marked)."""
    print(f"cache folder: {synthrooms_root(cache_dir)}")
    print(f"current generator fingerprint: {generator_fingerprint()}")
    rows = cache_summary(cache_dir)
    if not rows:
        print("no cached samples")
    for fingerprint, files, size, current in rows:
        print(f"  {fingerprint}: {files} files, {size / 1e6:.1f} MB{'' if current else ' (stale)'}")


def print_presence(
    looks: list[str], seed: int, classes: str, count: int, image_size: int, split: str = "train"
) -> dict[str, dict[str, float]]:
    """Print (and return, by look) the fraction of the first ``count`` images of ``split`` showing each class."""
    presence = {}
    for look in looks:
        sizes = {f"{name}_size": count for name in ("train", "val", "test")}
        domain = SynthRooms(look, seed, image_size, **sizes, cache=False, disk_cache=False, classes=classes)
        presence[look] = class_presence(domain, split, count)
    print(f"class presence: fraction of {count} {split} images ({image_size}x{image_size}, seed {seed}) showing it")
    print(f"{'class':>10}" + "".join(f"{look:>11}" for look in looks))
    for name in presence[looks[0]]:
        print(f"{name:>10}" + "".join(f"{presence[look][name]:>11.3f}" for look in looks))
    return presence


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="preview.png", help="PNG file to write")
    parser.add_argument("--n", type=int, default=6, help="number of scenes (columns)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour upscaling of the grid")
    parser.add_argument("--rate-count", type=int, default=200, help="images per look for the rate (0: skip)")
    parser.add_argument("--classes", choices=CLASS_SETS, default="basic", help="class set (default: basic)")
    parser.add_argument("--presence", action="store_true", help="print the class presence table instead of previewing")
    parser.add_argument("--look", choices=LOOKS, default=None, help="--presence: one look (default: both)")
    parser.add_argument("--count", type=int, default=500, help="--presence: number of images")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train", help="--presence: the split")
    parser.add_argument("--cache-info", action="store_true", help="describe the disk cache instead of previewing")
    parser.add_argument("--clear-cache", action="store_true", help="remove the disk cache instead of previewing")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="disk cache folder (default: $UMADAPT_CACHE_DIR, else $XDG_CACHE_HOME/umadapt, else ~/.cache/umadapt)",
    )
    args = parser.parse_args(argv)

    if args.cache_info or args.clear_cache:
        if args.cache_info:
            print_cache_info(args.cache_dir)
        if args.clear_cache:
            root, files, size = clear_cache(args.cache_dir)
            print(f"removed {root}: {files} files, {size / 1e6:.1f} MB" if files else f"nothing cached under {root}")
        return
    if args.presence:
        looks = [args.look] if args.look else list(LOOKS)
        print_presence(looks, args.seed, args.classes, args.count, args.image_size, args.split)
        return

    grid = preview_rows(args.seed, args.n, args.image_size, classes=args.classes)
    grid = np.repeat(np.repeat(grid, args.zoom, axis=0), args.zoom, axis=1)
    Image.fromarray(np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(args.out)
    print(f"wrote {args.out} (rows: synthetic, real, depth, normals, segmentation, contours)")
    if args.rate_count > 0:
        for look in LOOKS:
            rate = measure_generation_rate(look, 64, args.rate_count, classes=args.classes)
            rich = ", rich classes" if args.classes == "rich" else ""
            print(f"{look:>9} look, 64x64{rich}: {rate:.0f} images/s (one core)")


if __name__ == "__main__":
    main()
