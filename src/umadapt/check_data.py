"""``umadapt check-data --config ...``: read every sample of a config's data once, before training.

Builds the data module from the same config files (and overrides) as ``fit``, reads every sample of every split
(train, val, test) of the source and the target domain once, and reports **all** unreadable or inconsistent files
together, one ``path: reason`` line each: files that do not decode, labels whose size differs from their image,
label IDs outside the class list, label files without their image, whatever the readers' own checks raise. Source
and target must also name the same classes. Exit code 0 when all is well (the samples per split are printed), 2
otherwise; a config that cannot even be built (a missing folder) is one ``umadapt: error:`` line, as with ``fit``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import cv2
from jsonargparse import ArgumentError

from data_modules.domain import SPLITS, Domain
from data_modules.real.base import RealDomain
from data_modules.real.errors import CorruptFileError
from data_modules.real.io import FileDataset, LabelMapper
from umadapt.cli_args import summarize_parse_error

USAGE = """\
usage: umadapt check-data --config CONFIG [--config CONFIG ...] [--data.init_args.<key>=<value> ...]

Reads every sample of every split of the config's source and target domains once and lists every unreadable or
inconsistent file (one 'path: reason' line each). Takes the same --config files and overrides as `umadapt fit`.
Exit code 0: all samples read; 2: problems found (listed) or the config is wrong."""

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


@dataclass
class DataReport:
    """What :func:`check_domain` found: samples read per split, problems per file (the first reason), notes."""

    counts: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        self.problems.setdefault(str(path), reason)


@contextmanager
def _quiet() -> Iterator[None]:
    """check-data prints only its report: not the seed and accelerator lines of building the CLI objects, nor
    OpenCV's own log lines about the undecodable files it reports (or the readers' once-only warnings)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    cv2_level = cv2.utils.logging.getLogLevel()
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what the readers warn about once is counted and reported per file here
            yield
    finally:
        cv2.utils.logging.setLogLevel(cv2_level)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def build_datamodule(args: list[str]) -> Any:
    """The data module of ``args`` (``--config`` files and overrides), parsed and built exactly as ``fit`` does."""
    from umadapt.cli import build_cli  # here: umadapt.cli imports this module lazily, for `check-data`

    return build_cli(args, run=False).datamodule


def _key(item: Any, split: str, file_items: bool) -> Hashable:
    """One key per sample of a domain: file items (paths, names) are shared by the splits that overlap."""
    if not file_items:
        return split, item
    try:
        hash(item)
    except TypeError:
        return repr(item)
    return item


def _read_sample(dataset: Any, index: int) -> list[tuple[str, str]]:
    dataset[index]
    return []


def _read_all(reads: list[tuple[Any, Callable[[], Any]]], where: str, seen: set, report: DataReport) -> None:
    """Run each not yet ``seen`` read; a read returns ``(path, reason)`` problems or raises one."""
    for item, read in reads:
        if item in seen:
            continue
        seen.add(item)
        try:
            for path, reason in read() or ():
                report.add(path, reason)
        except CorruptFileError as error:
            report.add(error.path, error.problem)
        except Exception as error:  # noqa: BLE001 - any reader failure is a finding, reported with the sample
            report.add(f"{where} sample {item!r}", f"{type(error).__name__}: {error}")


def check_domain(role: str, domain: Domain, report: DataReport) -> None:
    """Read every sample of ``domain``'s splits once (overlapping splits share reads) into ``report``."""
    seen: set = set()
    counts = []
    missing_before = dict(getattr(domain, "missing", {}))
    for split in SPLITS:
        where = f"{role} {domain.name}/{split}"
        try:
            dataset = domain.dataset(split)
        except ValueError as error:  # e.g. an empty split
            report.add(where, str(error))
            continue
        if isinstance(dataset, FileDataset) and isinstance(domain, RealDomain):
            reads = [(_key(i, split, True), partial(domain.check_item, i)) for i in dataset.items]
        else:
            reads = [(_key(i, split, False), partial(_read_sample, dataset, i)) for i in range(len(dataset))]
        _read_all(reads, where, seen, report)
        counts.append(f"{split} {len(reads)}")
    root = getattr(domain, "root", None)
    report.counts.append(f"{role} {domain.name}{f' ({root})' if root else ''}: {', '.join(counts)} samples")
    for path, reason in domain.layout_problems() if isinstance(domain, RealDomain) else ():
        report.add(path, reason)
    for mapper in (value for value in vars(domain).values() if isinstance(value, LabelMapper)):
        for path, (pixels, values) in mapper.unmapped_files.items():
            report.add(path, f"{pixels} pixels have label IDs outside {mapper.name} (values {values}; read as 255)")
    for task, count in getattr(domain, "missing", {}).items():
        if count > missing_before.get(task, 0):
            new = count - missing_before.get(task, 0)
            report.notes.append(
                f"{role} {domain.name}: {new} sample(s) have no {task} file (all-invalid {task} targets: fine for "
                "unlabelled training images; evaluation scores only the labelled ones)"
            )


def check_classes(source: Domain, target: Domain, report: DataReport) -> None:
    """Source and target must name the same classes in the same order (class ``k`` is one thing in both)."""
    ours, theirs = list(source.class_names or ()), list(target.class_names or ())
    if ours and theirs and ours != theirs:
        only_source, only_target = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        detail = f"only in the source: {only_source[:5]}, only in the target: {only_target[:5]}"
        if not only_source and not only_target:
            detail = "the same names in another order"
        where = str(getattr(target, "root", target.name))
        report.add(where, f"the target's classes differ from the source's ({detail}); give both the same class list")


def check(datamodule: Any) -> DataReport:
    """Read every sample of ``datamodule``'s source and target (a :class:`~data_modules.PairedDataModule`)."""
    report = DataReport()
    for role in ("source", "target"):
        check_domain(role, getattr(datamodule, role), report)
    check_classes(datamodule.source, datamodule.target, report)
    return report


def main(args: list[str]) -> int:
    """``umadapt check-data ARGS``: print the report; 0 when every sample was read, 2 otherwise."""
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    try:
        with _quiet():
            report = check(build_datamodule(args))
    except (ArgumentError, ValueError) as error:  # a wrong key or value, a missing dataset folder (ConfigError)
        while isinstance(error.__cause__, ValueError):  # jsonargparse wraps a constructor's error: show the cause
            error = error.__cause__
        message = summarize_parse_error(str(error)) if isinstance(error, ArgumentError) else str(error)
        print(f"umadapt: error: {message}", file=sys.stderr)
        return 2
    for line in report.counts:
        print(f"check-data: {line}")
    for note in report.notes:
        print(f"check-data: note: {note}")
    if not report.problems:
        print("check-data: every sample was read; no problems found.")
        return 0
    for path, reason in report.problems.items():
        print(f"{path}: {reason}", file=sys.stderr)
    print(
        f"umadapt: error: {len(report.problems)} unreadable or inconsistent file(s), listed above; fix or remove "
        "them and run check-data again.",
        file=sys.stderr,
    )
    return 2
