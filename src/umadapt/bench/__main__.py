"""``python -m umadapt.bench {run,pairs,mtl,dynamic,speed,select} ...``: the benchmark commands (``--help`` after
one for its options).

python -m umadapt.bench run synthrooms --seeds 0 1 2 --out results/synthrooms.md
python -m umadapt.bench pairs office31 --out-dir results/office31
python -m umadapt.bench mtl --out results/mtl.md
python -m umadapt.bench dynamic --out results/dynamic.md
python -m umadapt.bench speed --out results/speed.md
python -m umadapt.bench select experiments/selection/digits_dann.yaml --runs-dir runs --out results/selection_digits.md
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "run": "umadapt.bench.runner",
    "pairs": "umadapt.bench.pairs",
    "mtl": "umadapt.bench.mtl",
    "dynamic": "umadapt.bench.dynamic",
    "speed": "umadapt.bench.speed",
    "select": "umadapt.bench.selection",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the named command's ``main``; configuration mistakes end in one line naming the fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    try:
        importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    except ValueError as error:  # includes ConfigError
        if os.environ.get("UMADAPT_TRACEBACK"):
            raise
        print(f"umadapt.bench {argv[0]}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
