"""What the ``umadapt`` command does with its arguments before and around LightningCLI: ``--run`` expansion, the
config-order check, one-line parse errors, and silencing Lightning's known noise."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from umadapt.errors import ConfigError

__all__ = [
    "check_config_order",
    "expand_run",
    "integer_batch_limits",
    "overridden_by_checkpoint",
    "quiet_lightning_noise",
    "summarize_parse_error",
]

BATCH_LIMITS = (
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "val_check_interval",
)
"""Trainer options where an integer counts batches and a float is a fraction (``1`` is one batch, ``1.0`` all)."""

EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")


def expand_run(args: list[str]) -> list[str]:
    """``umadapt test|validate|predict --run <run folder>``: evaluate a finished run with its own ``config.yaml`` and
    ``checkpoints/last.ckpt``, writing ``results.json`` and ``predictions/`` into that folder and nothing else (no
    new logger version; the run's ``metrics.csv``, ``config.yaml`` and ``run_record.json`` stay as they are)."""
    if "--run" not in args and not any(a.startswith("--run=") for a in args):
        return args
    if not args or args[0] not in EVALUATION_SUBCOMMANDS:
        raise ConfigError(
            f"--run works with {'/'.join(EVALUATION_SUBCOMMANDS)}: e.g. umadapt test --run logs/umadapt/version_0."
        )
    rest: list[str] = []
    folder: str | None = None
    items = iter(args[1:])
    for arg in items:
        if arg == "--run":
            folder = next(items, None)
        elif arg.startswith("--run="):
            folder = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if not folder:
        raise ConfigError("--run needs a run folder, e.g. --run logs/umadapt/version_0.")
    if any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in rest):
        raise ConfigError("--run takes the run's checkpoints/last.ckpt: drop --ckpt_path, or drop --run.")
    run = Path(folder)
    config, checkpoint = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    for path, what in ((config, "its config.yaml"), (checkpoint, "checkpoints/last.ckpt")):
        if not path.is_file():
            raise ConfigError(f"--run {folder}: {what} is missing ({path}); pass the folder of a finished fit run.")
    outputs = {
        "test": [f"--results.path={run / 'results.json'}"],
        "predict": [f"--predictions.output_dir={run / 'predictions'}"],
    }
    return [
        args[0],
        "--config",
        str(config),
        *rest,
        f"--ckpt_path={checkpoint}",
        "--trainer.logger=false",
        *outputs.get(args[0], []),
    ]


def _config_file_at(args: list[str], i: int) -> str | None:
    """The ``--config`` file named at ``args[i]`` (``--config F``, ``-c F`` or ``--config=F``), else ``None``."""
    if args[i] in ("--config", "-c") and i + 1 < len(args):
        return args[i + 1]
    return args[i].split("=", 1)[1] if args[i].startswith("--config=") else None


def _config_files(args: list[str]) -> list[str]:
    return [file for i in range(len(args)) if (file := _config_file_at(args, i)) is not None]


def _accepted_arguments(class_path: str) -> set[str] | None:
    """The constructor arguments of ``class_path``, following ``**kwargs`` into the base classes (``None`` when the
    class cannot be imported or takes arbitrary keywords)."""
    cls = _import_class(class_path)
    if cls is None:
        return None
    accepted: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        accepted |= {p for p, v in parameters.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)} - {"self"}
        if not any(v.kind is v.VAR_KEYWORD for v in parameters.values()):
            return accepted
    return None


def _import_class(class_path: str) -> type | None:
    """The class a ``class_path`` names, or ``None`` when it cannot be imported."""
    module, _, name = str(class_path or "").rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def check_config_order(args: list[str]) -> None:
    """Refuse unreadable or malformed ``--config`` files (naming file and line) and files where a later one replaces
    the model or data class set by an earlier one and so drops that file's settings (e.g. ``--config dann.yaml
    --config base.yaml`` trains SourceOnly)."""
    seen: dict[str, tuple[str, str, dict]] = {}
    for file in _config_files(args):
        try:
            content = yaml.safe_load(Path(file).read_text()) or {}
        except OSError as error:
            raise ConfigError(f"--config {file}: cannot read it ({error.strerror}); check the path.") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"--config {file}: malformed YAML{where} ({problem}); fix that file.") from None
        for key in ("model", "data"):
            part = content.get(key) if isinstance(content, dict) else None
            if not isinstance(part, dict) or "class_path" not in part:
                continue
            previous = seen.get(key)
            class_path = str(part["class_path"])
            if previous and previous[1] != class_path:
                accepted = _accepted_arguments(class_path)
                dropped = sorted(set(previous[2]) - accepted) if accepted is not None else []
                if dropped:
                    raise ConfigError(
                        f"--config {file} replaces {key} {previous[1].rsplit('.', 1)[-1]} (set by {previous[0]}) with "
                        f"{class_path.rsplit('.', 1)[-1]}, which drops {previous[0]}'s {dropped}: list the base "
                        "config first and the method config after it "
                        f"(--config base.yaml --config {Path(previous[0]).name})."
                    )
            seen[key] = (file, class_path, dict(part.get("init_args") or {}))


def integer_batch_limits(args: list[str]) -> dict[str, int]:
    """The :data:`BATCH_LIMITS` the user wrote as integers (in a ``--config`` file or as ``--trainer.<key>=N``; later
    ones win): the parser turns ``1`` into ``1.0``, which Lightning reads as "all batches"."""
    found: dict[str, int] = {}
    for i, arg in enumerate(args):
        file = _config_file_at(args, i)
        if file is not None:
            try:
                trainer = (yaml.safe_load(Path(file).read_text()) or {}).get("trainer") or {}
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            found.update({k: v for k, v in trainer.items() if k in BATCH_LIMITS and type(v) is int})
        match = re.fullmatch(r"--trainer\.(\w+)=(\d+)", arg)
        if match and match.group(1) in BATCH_LIMITS:
            found[match.group(1)] = int(match.group(2))
        key = arg.removeprefix("--trainer.")
        if key in BATCH_LIMITS and arg != key and i + 1 < len(args) and args[i + 1].isdigit():  # `--key N` form
            found[key] = int(args[i + 1])
    return found


def summarize_parse_error(message: str) -> str:
    """One line from jsonargparse's nested parse error: the key, what is wrong and the value given."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "could not parse the arguments"
    key = re.search(r'Parser key "([^"]+)"', lines[0])
    where = key.group(1) if key else None
    skip = ("Does not validate", "Subtypes:", "Errors:", "Given value type", "- Expected a <class 'NoneType'>")
    details = [line.lstrip("- ") for line in lines[1:] if not line.startswith(skip)]
    problem = next((d for d in details if "is not accepted" in d or "not a valid" in d.lower()), None)
    class_path = next((re.search(r"class_path '([^']+)'", d).group(1) for d in details if "class_path '" in d), None)
    expected = sorted({m for d in details for m in re.findall(r"Expected a <class '([\w.]+)'>", d)} - {"NoneType"})
    given = next((d.split(":", 1)[1].strip() for d in details if d.startswith("Given value:")), None)
    nested = re.match(r"NestedArg\(key='([^']+)', val='(.*)'\)$", given or "")
    if nested:
        where, given = f"{where}.init_args.{nested.group(1)}" if where else nested.group(1), nested.group(2)
    if problem:
        text = problem + (f" by {class_path}" if class_path else "") + _accepted_by(problem)
    elif expected:
        text = f"expected {' or '.join(expected)}" + (f", got {given!r}" if given is not None else "")
    else:
        text = details[-1] if details else lines[0]
    prefix = f"{where}: " if where else ""
    return f"{prefix}{text} (umadapt <subcommand> --config ... --print_config lists the valid keys)"


def _accepted_by(problem: str) -> str:
    """``"; only <methods> accept it"`` when the option a parse error refuses is an inference-time control of some
    methods (``inference_controls``, e.g. ``preference``), else ``""``."""
    option = re.search(r"Option '([^']+)' is not accepted", problem)
    if not option:
        return ""
    import umadapt.methods

    owners = [
        f"umadapt.methods.{name}"
        for name in umadapt.methods.__all__
        if option.group(1) in getattr(getattr(umadapt.methods, name), "inference_controls", ())
    ]
    return f"; only {', '.join(owners)} accept{'s' if len(owners) == 1 else ''} it" if owners else ""


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def quiet_lightning_noise() -> None:
    """Silence what Lightning prints on every command that says nothing about the run: the litlogger advert, the
    args-and-argv notice of a CLI called from ``main``, the ``_pytree`` deprecation and the checkpoint "dirpath has
    changed" notice of ``test``/``predict``."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropMessages("litlogger"))
    for pattern in (
        r"LightningCLI's args parameter is intended",
        r".*isinstance\(treespec, LeafSpec\)",
        r"The dirpath has changed from",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def keep_inference_controls(before: Any, after: Any) -> list[str]:
    """Put back the configured values of the model's inference-time controls (the class attribute
    ``inference_controls``, e.g. a controllable model's ``preference`` and ``budget``) after Lightning replaced the
    model config with a checkpoint's hyperparameters: they say what to run, not how the model was trained. Returns
    the keys put back."""
    if before is None or after is None:
        return []
    controls = tuple(getattr(_import_class(_get(before, "class_path")), "inference_controls", ()))
    configured, merged = _get(before, "init_args"), _get(after, "init_args")
    kept = []
    for key in controls:
        value = _get(configured, key)
        if value is not None and merged is not None:
            merged[key] = value
            kept.append(key)
    return kept


def _get(value: Any, key: str) -> Any:
    if value is None:
        return None
    return value.get(key) if hasattr(value, "get") else getattr(value, key, None)


def overridden_by_checkpoint(before: Any, after: Any, prefix: str = "model") -> list[str]:
    """The flattened keys whose configured value a checkpoint's hyperparameters replaced (``before``/``after`` are
    the model config before and after Lightning merged the checkpoint's)."""
    flat_before, flat_after = _flatten(before, prefix), _flatten(after, prefix)
    return sorted(
        f"{k} (config {flat_before[k]!r}, checkpoint {flat_after[k]!r})"
        for k in flat_before
        if k in flat_after and flat_before[k] != flat_after[k]
    )


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}
