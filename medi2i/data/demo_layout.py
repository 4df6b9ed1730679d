"""The demo cohort on disk: file names, on-disk encoding, splits, manifests, ``cohort.json``.

Internal to :mod:`medi2i.data.demo` (which documents the layout); nothing here simulates. Every
write goes through :func:`medi2i.io.save_volume` or :func:`medi2i.io.atomic_path`, so a killed
process leaves whole files or temporary ``.*.part*`` files, never a truncated file at a final path.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medi2i.data.demo_simulation import SimulatedSubject
from medi2i.data.demo_template import TEMPLATE_NOTICE
from medi2i.io import atomic_path

logger = logging.getLogger(__name__)

RECORD_NAME = "cohort.json"
NOTICE_NAME = "NOTICE.txt"
LOCK_NAME = ".cohort.lock"
MODALITIES: tuple[str, ...] = ("t1w", "t2w", "ct", "mask", "label")
MR_SCALE = 1000.0  # MR intensities are stored x 1000 as int16 (white matter ~1000)
MANIFEST_NAMES: tuple[str, ...] = tuple(
    f"{view}_{dim}d" for dim in (3, 2) for view in ("synthesis_t1w_t2w", "synthesis_mr_ct", "registration")
)
SYNTHESIS_COLUMNS = ("subject_id", "split", "source", "target", "mask", "label", "site", "anatomy")
REGISTRATION_COLUMNS = (
    "pair_id", "split", "fixed", "moving", "fixed_label", "moving_label", "fixed_mask", "moving_mask",
)  # fmt: skip
SHORT_NOTICE = "MNI ICBM152 2009a (C) 1993-2009 Collins, MNI/McGill"  # fits the 80-byte NIfTI descrip
PARAM_KEYS = ("recipe", "subjects", "resolution", "dims", "seed")

_SUBJECT_FILE = re.compile(r"sub-\d{3}_(" + "|".join(MODALITIES) + r")\.nii\.gz")

NOTICE_TEXT = f"""\
medi2i demo cohort

These volumes are simulated from the MNI ICBM152 2009a nonlinear symmetric template shipped with
nilearn, and are derived from it. The template's notice:

{TEMPLATE_NOTICE}

Limits: every subject is a smooth warp of one averaged template, the skull is a synthetic shell
(no face, sinuses or skull base; the brain touches the lowest slice), and T2w and CT are
simulated from tissue maps. Metrics on this cohort look better than on real data and are not
comparable with SynthRAD or Learn2Reg results.
"""


def subject_id(index: int) -> str:
    return f"sub-{index:03d}"


def relative_path(dim: int, index: int, modality: str) -> str:
    """Path of one volume relative to the cohort folder, e.g. ``3d/sub-000_t1w.nii.gz``."""
    return f"{dim}d/{subject_id(index)}_{modality}.nii.gz"


def subject_files(subjects: int, dims: Sequence[int]) -> dict[tuple[int, int], list[str]]:
    """``(dim, index) -> [relative paths]`` of every volume of the cohort."""
    return {(d, i): [relative_path(d, i, m) for m in MODALITIES] for d in dims for i in range(subjects)}


def encode(subject: SimulatedSubject, modality: str) -> tuple[np.ndarray, type]:
    """On-disk values and dtype: MR x 1000 as int16, CT in HU as int16, mask and labels as uint8."""
    value = getattr(subject, modality)
    if modality in ("t1w", "t2w"):
        return np.clip(np.rint(value * MR_SCALE), 0, np.iinfo(np.int16).max), np.int16
    if modality == "ct":
        return np.rint(value), np.int16
    return value, np.uint8


def subject_split(index: int, subjects: int) -> str:
    """Split of subject ``index`` in a cohort of ``subjects``: ``"train"``, ``"val"`` or ``"test"``.

    The last ``k`` subjects are test, the ``k`` before them val, where ``k = 2`` if ``subjects >= 6``
    else 1 (so 6 or more subjects give every split a registration pair).

    Example:
        >>> [subject_split(i, 10) for i in range(10)].count("train"), subject_split(9, 10), subject_split(0, 3)
        (6, 'test', 'train')
    """
    held_out = 2 if subjects >= 6 else 1
    if index >= subjects - held_out:
        return "test"
    if index >= subjects - 2 * held_out:
        return "val"
    return "train"


def registration_pairs(members: Sequence[int]) -> list[tuple[int, int]]:
    """``(fixed, moving)`` pairs inside one split: a ring of consecutive subjects (one pair for two).

    Example:
        >>> registration_pairs([0, 1, 2]), registration_pairs([4, 5]), registration_pairs([7])
        ([(0, 1), (1, 2), (2, 0)], [(4, 5)], [])
    """
    if len(members) < 2:
        return []
    if len(members) == 2:
        return [(members[0], members[1])]
    return [(members[k], members[(k + 1) % len(members)]) for k in range(len(members))]


def write_manifests(root: Path, subjects: int, dims: Sequence[int]) -> list[str]:
    """Write the synthesis and registration manifests of each part; return their file names."""
    written = []
    for dim in dims:

        def rel(index: int, modality: str, dim: int = dim) -> str:
            return relative_path(dim, index, modality)

        for view, target in (("synthesis_t1w_t2w", "t2w"), ("synthesis_mr_ct", "ct")):
            rows = [
                (subject_id(i), subject_split(i, subjects), rel(i, "t1w"), rel(i, target), rel(i, "mask"),
                 rel(i, "label"), "demo", "brain")
                for i in range(subjects)
            ]  # fmt: skip
            written.append(_write_csv(root / f"{view}_{dim}d.csv", SYNTHESIS_COLUMNS, rows))
        rows = []
        for split in ("train", "val", "test"):
            members = [i for i in range(subjects) if subject_split(i, subjects) == split]
            for fixed, moving in registration_pairs(members):
                rows.append(
                    (f"{subject_id(fixed)}_{subject_id(moving)}", split, rel(fixed, "t1w"), rel(moving, "t1w"),
                     rel(fixed, "label"), rel(moving, "label"), rel(fixed, "mask"), rel(moving, "mask"))
                )  # fmt: skip
        written.append(_write_csv(root / f"registration_{dim}d.csv", REGISTRATION_COLUMNS, rows))
    return [path.name for path in written]


def write_notice(root: Path) -> str:
    with atomic_path(root / NOTICE_NAME) as tmp:
        tmp.write_text(NOTICE_TEXT)
    return NOTICE_NAME


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------
# cohort.json: parameters and checksums, written last


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(root: Path, record: dict[str, Any], files: Sequence[str]) -> None:
    """Hash ``files`` into ``record`` and write it atomically as ``cohort.json`` (marks the cohort complete)."""
    full = record | {"files": {name: sha256(root / name) for name in sorted(files)}}
    with atomic_path(root / RECORD_NAME) as tmp:
        tmp.write_text(json.dumps(full, indent=2) + "\n")


def read_record(root: Path) -> dict[str, Any] | None:
    """The parsed ``cohort.json``, or None if it is absent or unreadable (then the cohort is rebuilt)."""
    path = root / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        record_params(record)
        if not isinstance(record["files"], dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("%s is unreadable (%s); the cohort will be regenerated", path, err)
        return None
    return record


def record_params(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in PARAM_KEYS}


def damaged_files(root: Path, record: dict[str, Any]) -> set[str]:
    """Names listed in the record that are missing or whose sha256 differs."""
    files: dict[str, str] = record["files"]
    return {name for name, digest in files.items() if not (root / name).is_file() or sha256(root / name) != digest}


# --------------------------------------------------------------------------------------------
# the destination folder


def is_own_name(name: str) -> bool:
    """Top-level names a cohort folder may hold (including temporary files of an interrupted run)."""
    own = {"3d", "2d", RECORD_NAME, NOTICE_NAME, LOCK_NAME} | {f"{m}.csv" for m in MANIFEST_NAMES}
    return name in own or _is_temporary(name)


def remove_own_files(root: Path) -> None:
    """Delete what a previous (complete or interrupted) cohort left, matched by name; nothing else."""
    for name in [f"{m}.csv" for m in MANIFEST_NAMES] + [NOTICE_NAME]:
        (root / name).unlink(missing_ok=True)
    for folder in (root, root / "2d", root / "3d"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _is_temporary(path.name) or (folder != root and _SUBJECT_FILE.fullmatch(path.name)):
                path.unlink(missing_ok=True)
        if folder != root and not any(folder.iterdir()):
            folder.rmdir()


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".part" in name  # medi2i.io.atomic_path's temporary names


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cohort folder (POSIX ``flock``; no locking where unavailable).

    Concurrent first uses (e.g. one process per GPU) then generate once; the others wait and verify.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
