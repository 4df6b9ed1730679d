"""Manifests for public datasets: scan a local copy, write a validated medi2i manifest.

Each supported dataset has a scanner that walks a local copy laid out as
``data_manifests/README.md`` describes (the folder and file names the dataset is distributed
with) and returns manifest rows whose paths are relative to ``data_root``. Splits follow the
dataset's official protocol where one exists and a seeded, documented rule otherwise:

==========================  ============  =====================================================
dataset                     kind          split
==========================  ============  =====================================================
synthrad2023_task1_brain    synthesis     seeded 80/10/10 per centre (A/B/C), :func:`seeded_split`
synthrad2023_task1_pelvis   synthesis     seeded 80/10/10 per centre (A/B/C)
brats2021                   synthesis     seeded 80/10/10
ixi                         synthesis     seeded 80/10/10 per site (Guys/HH/IOP)
lpba40                      registration  SPAC: atlas S01 fixed; S02-S30 train, S31-S40 val
learn2reg_oasis             registration  Learn2Reg task 3: 19 official val pairs 0395->0396 ...
                                          0413->0414; train = consecutive pairs of the others
==========================  ============  =====================================================

Nothing is downloaded and no image is opened: scanners only look at names, so a scan of a
full dataset takes seconds. ``medi2i check --manifest`` then validates the volumes themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.data.manifest import SPLITS, ManifestKind, read_manifest, write_manifest
from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path
from medi2i.options import choose_key

if TYPE_CHECKING:  # medi2i.typing imports torch (~1 s); these modules must stay light
    from medi2i.typing import PathLike

logger = logging.getLogger(__name__)

Row = dict[str, str]
#: ``scan(data_root, seed, skip_incomplete) -> rows``; ``data_root`` is an existing, resolved folder
Scanner = Callable[[Path, int, bool], list[Row]]

#: train / val / test fractions of the seeded split
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
#: the empty optional path columns are still written so every template has the documented header
_REGISTRATION_MASKS = ("fixed_mask", "moving_mask")


@dataclass(frozen=True)
class PublicDataset:
    """One supported public dataset.

    Args:
        kind: the manifest kind its rows form.
        summary: one line on what the manifest contains.
        layout: the expected layout under ``data_root`` (shown in errors and by ``medi2i manifest --list``).
        split_rule: how rows get their split.
        scan: the scanner, ``scan(data_root, seed, skip_incomplete) -> rows``.
        skip_incomplete: default of ``skip_incomplete`` when the caller passes ``None``; ``True`` only
            where the distribution itself is known to be incomplete (IXI).

    Example:
        >>> DATASETS["ixi"].kind.value, DATASETS["ixi"].skip_incomplete
        ('synthesis', True)
    """

    kind: ManifestKind
    summary: str
    layout: str
    split_rule: str
    scan: Scanner
    skip_incomplete: bool = False


def seeded_split(
    ids: Iterable[str],
    *,
    seed: int = 0,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    groups: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Assign ``train``/``val``/``test`` deterministically from the ids alone.

    Ids are ranked by ``sha256(f"{seed}:{id}")``; the first ``n - n_val - n_test`` go to train, the
    next ``n_val`` to val and the rest to test, with ``n_val = floor(n * ratios[1] + 0.5)`` (same
    for test) and, when ``n >= 3``, at least one id each in val and test. The result does not
    depend on file-system order, Python's hash seed or the platform. With ``groups`` the rule runs
    per group (e.g. per acquisition site), so every site appears in every split.

    Args:
        ids: unique subject ids.
        seed: changes the ranking; the same seed always gives the same split.
        ratios: train, val, test fractions (non-negative, summing to 1). Default ``(0.8, 0.1, 0.1)``.
        groups: optional id -> group (stratum) mapping; every id must have a group.

    Returns:
        id -> split.

    Raises:
        ValueError: on bad ``ratios``, duplicate ids or ids without a group.

    Example:
        >>> split = seeded_split([f"s{i:02d}" for i in range(20)], seed=0)
        >>> [list(split.values()).count(s) for s in ("train", "val", "test")]
        [16, 2, 2]
        >>> split == seeded_split(reversed([f"s{i:02d}" for i in range(20)]), seed=0)
        True
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must be three non-negative fractions (train, val, test) summing to 1, got {ratios}")
    id_list = list(ids)
    if len(set(id_list)) != len(id_list):
        raise ValueError("ids must be unique")
    strata: dict[str, list[str]] = {}
    for identifier in id_list:
        if groups is not None and identifier not in groups:
            raise ValueError(f"id {identifier!r} has no group")
        strata.setdefault("" if groups is None else groups[identifier], []).append(identifier)
    split: dict[str, str] = {}
    for members in strata.values():
        ranked = sorted(members, key=lambda i: (hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), i))
        n = len(ranked)
        n_val, n_test = (math.floor(n * r + 0.5) for r in ratios[1:])
        if n >= 3:  # a tiny cohort should still give a non-empty val and test split
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        n_train = n - n_val - n_test
        for rank, identifier in enumerate(ranked):
            split[identifier] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return split


# --------------------------------------------------------------------------- shared helpers


def _rel(path: Path, root: Path) -> str:
    """POSIX path relative to ``root``, so a manifest written on one OS reads on another."""
    return path.relative_to(root).as_posix()


def _layout_error(dataset: str, root: Path, expected: str, *, detail: str = "layout not found") -> Medi2iInputError:
    """Name what was expected where, and show what is actually at ``data_root``."""
    try:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError:
        entries = []
    shown = entries[:8] + (["..."] if len(entries) > 8 else [])
    return Medi2iInputError(
        f"{dataset}: {detail}",
        path=root,
        field="data_root",
        found=f"entries {shown}" if shown else "an empty folder",
        expected=expected,
    )


def _drop_incomplete(dataset: str, root: Path, missing: Mapping[str, Sequence[str]], skip_incomplete: bool) -> set[str]:
    """Raise on subjects that lack files, or (``skip_incomplete``) log them and return their ids."""
    if not missing:
        return set()
    listed = "; ".join(f"{subject}: {', '.join(files)}" for subject, files in sorted(missing.items())[:10])
    more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
    if not skip_incomplete:
        raise Medi2iInputError(
            f"{dataset}: {len(missing)} subject(s) lack a file",
            path=root,
            field="data_root",
            found=listed + more,
            expected="every listed file present, or skip_incomplete=True (--skip-incomplete) to leave them out",
        )
    logger.warning("%s: skipping %d incomplete subject(s): %s%s", dataset, len(missing), listed, more)
    return set(missing)


def _subfolders(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Sub-folders whose whole name matches ``pattern``, sorted by name (other entries are ignored)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and pattern.fullmatch(p.name)), key=lambda p: p.name)


# --------------------------------------------------------------------------- SynthRAD2023 task 1

# task digit 1, anatomy B(rain)/P(elvis), centre A/B/C, three-digit index (e.g. 1BA001)
_SYNTHRAD_ID = re.compile(r"1([BP])([ABC])(\d{3})")
_SYNTHRAD_FILES = {"source": "mr.nii.gz", "target": "ct.nii.gz", "mask": "mask.nii.gz"}


def _scan_synthrad(root: Path, seed: int, skip_incomplete: bool, *, anatomy: str) -> list[Row]:
    dataset = f"synthrad2023_task1_{anatomy}"
    folder = root / "Task1" / anatomy
    letter = anatomy[0].upper()
    cases = [p for p in _subfolders(folder, _SYNTHRAD_ID) if p.name[1] == letter]
    if not cases:
        raise _layout_error(
            dataset,
            root,
            f"case folders {root}/Task1/{anatomy}/<ID>/{{mr,ct,mask}}.nii.gz with IDs like 1{letter}A001 "
            f"(--data-root is the folder that holds Task1/)",
        )
    missing = {case.name: [name for name in _SYNTHRAD_FILES.values() if not (case / name).is_file()] for case in cases}
    skipped = _drop_incomplete(dataset, root, {k: v for k, v in missing.items() if v}, skip_incomplete)
    cases = [case for case in cases if case.name not in skipped]
    if not cases:
        raise _layout_error(dataset, root, "at least one complete case", detail="no complete case left")
    # the centre is the third character of the id; stratifying by it keeps every centre in every split
    sites = {case.name: case.name[2] for case in cases}
    split = seeded_split(sites, seed=seed, groups=sites)
    rows = []
    for case in cases:
        row = {"subject_id": case.name, "split": split[case.name]}
        row.update({column: _rel(case / name, root) for column, name in _SYNTHRAD_FILES.items()})
        row.update(site=sites[case.name], anatomy=anatomy)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- BraTS 2021

_BRATS_ID = re.compile(r"BraTS2021_\d{5}")


def _scan_brats2021(root: Path, seed: int, skip_incomplete: bool) -> list[Row]:
    dataset = "brats2021"
    cases = _subfolders(root, _BRATS_ID)
    if not cases:
        raise _layout_error(
            dataset,
            root,
            f"case folders {root}/BraTS2021_<5 digits>/BraTS2021_<5 digits>_{{t1,t2}}.nii.gz "
            "(--data-root is the folder that directly holds the BraTS2021_xxxxx folders)",
        )
    missing = {
        case.name: [f"{case.name}_{m}.nii.gz" for m in ("t1", "t2") if not (case / f"{case.name}_{m}.nii.gz").is_file()]
        for case in cases
    }
    skipped = _drop_incomplete(dataset, root, {k: v for k, v in missing.items() if v}, skip_incomplete)
    cases = [case for case in cases if case.name not in skipped]
    if not cases:
        raise _layout_error(dataset, root, "at least one case with t1 and t2", detail="no complete case left")
    has_seg = {case.name: (case / f"{case.name}_seg.nii.gz").is_file() for case in cases}
    # the label column must be filled for every row or for none (a datalist with missing keys does
    # not collate), so a partial set of segmentations is dropped rather than half-used
    use_label = all(has_seg.values())
    if any(has_seg.values()) and not use_label:
        lacking = sorted(k for k, v in has_seg.items() if not v)
        logger.warning(
            "brats2021: %d case(s) have no _seg.nii.gz (e.g. %s); the label column is left empty for all rows",
            len(lacking),
            ", ".join(lacking[:5]),
        )
    split = seeded_split([case.name for case in cases], seed=seed)
    rows = []
    for case in cases:
        name = case.name
        rows.append(
            {
                "subject_id": name,
                "split": split[name],
                "source": _rel(case / f"{name}_t1.nii.gz", root),
                "target": _rel(case / f"{name}_t2.nii.gz", root),
                "mask": "",  # BraTS ships skull-stripped volumes and no brain-mask file
                "label": _rel(case / f"{name}_seg.nii.gz", root) if use_label else "",
            }
        )
    return rows


# --------------------------------------------------------------------------- IXI

# IXI<3 digits>-<site>-<4 digits>-<modality>.nii.gz; the stem before the modality is shared by a subject's files
_IXI_T1 = re.compile(r"(IXI\d{3}-(Guys|HH|IOP)-\d{4})-T1\.nii\.gz")
IXI_T2_COREG_DIR = "IXI-T2-coreg"


def _scan_ixi(root: Path, seed: int, skip_incomplete: bool) -> list[Row]:
    dataset = "ixi"
    t1_dir = root / "IXI-T1"
    t1_files = sorted(t1_dir.glob("IXI*-T1.nii.gz")) if t1_dir.is_dir() else []
    # stem (e.g. IXI002-Guys-0828) -> site
    stems = {m.group(1): m.group(2) for p in t1_files if (m := _IXI_T1.fullmatch(p.name))}
    # T1 and T2 are acquired on different grids; co-registered T2 volumes (same names) take precedence
    t2_dir = root / IXI_T2_COREG_DIR
    if not t2_dir.is_dir():
        t2_dir = root / "IXI-T2"
    if not stems or not t2_dir.is_dir():
        raise _layout_error(
            dataset,
            root,
            f"{root}/IXI-T1/IXI<nnn>-<Guys|HH|IOP>-<nnnn>-T1.nii.gz and the matching T2 files in "
            f"{root}/{IXI_T2_COREG_DIR}/ (co-registered to T1, preferred) or {root}/IXI-T2/ (as distributed)",
        )
    if t2_dir.name == "IXI-T2":
        logger.warning(
            "ixi: using IXI-T2/ as distributed; IXI T1 and T2 are not co-registered, so `medi2i check` rejects "
            "these rows until T2 volumes resampled onto the T1 grids are placed in %s/",
            IXI_T2_COREG_DIR,
        )
    missing = {s: [f"{t2_dir.name}/{s}-T2.nii.gz"] for s in stems if not (t2_dir / f"{s}-T2.nii.gz").is_file()}
    skipped = _drop_incomplete(dataset, root, missing, skip_incomplete)
    sites = {stem: site for stem, site in stems.items() if stem not in skipped}
    if not sites:
        raise _layout_error(dataset, root, "at least one subject with T1 and T2", detail="no complete subject left")
    split = seeded_split(sites, seed=seed, groups=sites)
    return [
        {
            "subject_id": stem,
            "split": split[stem],
            "source": _rel(t1_dir / f"{stem}-T1.nii.gz", root),
            "target": _rel(t2_dir / f"{stem}-T2.nii.gz", root),
            "mask": "",  # IXI has no brain masks
            "site": site,
        }
        for stem, site in sorted(sites.items())
    ]


# --------------------------------------------------------------------------- LPBA40

LPBA_ATLAS = "S01"
#: SPAC (Algolzw/SPAC-Deformable-Registration, code/datasets/LPBA.json): S02-S30 "combine-train", S31-S40 "lpba-val"
LPBA_SPLIT: dict[str, str] = {f"S{i:02d}": "train" if i <= 30 else "val" for i in range(2, 41)}
_LPBA_SUFFIXES = (".nii.gz", ".nii", ".hdr")  # converted NIfTI first, then LONI's Analyze header


def _lpba_file(root: Path, subject: str, what: str) -> Path | None:
    folder = root / "delineation_space" / subject
    for suffix in _LPBA_SUFFIXES:
        candidate = folder / f"{subject}.delineation.{what}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _scan_lpba40(root: Path, seed: int, skip_incomplete: bool) -> list[Row]:
    del seed  # the split is the published SPAC one
    dataset = "lpba40"
    layout = (
        f"{root}/delineation_space/S01..S40/S<nn>.delineation.{{skullstripped,structure.label}}"
        f"{{{','.join(_LPBA_SUFFIXES)}}}"
    )
    found: dict[str, tuple[Path, Path]] = {}
    missing: dict[str, list[str]] = {}
    for subject in [LPBA_ATLAS, *LPBA_SPLIT]:
        image, label = (_lpba_file(root, subject, what) for what in ("skullstripped", "structure.label"))
        if image is not None and label is not None:
            found[subject] = (image, label)
        else:  # every subject of the official split is expected; an absent one is reported like a missing file
            missing[subject] = [
                f"{subject}.delineation.{what}"
                for what, p in (("skullstripped", image), ("structure.label", label))
                if p is None
            ]
    if LPBA_ATLAS not in found:
        raise _layout_error(dataset, root, layout, detail="atlas S01 (image and label) not found")
    _drop_incomplete(dataset, root, missing, skip_incomplete)
    atlas_image, atlas_label = found.pop(LPBA_ATLAS)
    if not found:
        raise _layout_error(dataset, root, layout, detail="no complete subject besides the atlas")
    return [
        {
            "pair_id": f"{LPBA_ATLAS}_{subject}",
            "split": LPBA_SPLIT[subject],
            "fixed": _rel(atlas_image, root),
            "moving": _rel(image, root),
            "fixed_label": _rel(atlas_label, root),
            "moving_label": _rel(label, root),
            **dict.fromkeys(_REGISTRATION_MASKS, ""),
        }
        for subject, (image, label) in found.items()
    ]


# --------------------------------------------------------------------------- Learn2Reg task 3 (OASIS)

#: Learn2Reg 2021 task 3 validation pairs (fixed, moving): 0395->0396 ... 0413->0414
L2R_OASIS_VAL_PAIRS: tuple[tuple[str, str], ...] = tuple((f"{i:04d}", f"{i + 1:04d}") for i in range(395, 414))
_L2R_IMAGE = re.compile(r"OASIS_(\d{4})_0000\.nii\.gz")


def _l2r_subject(entry: object) -> str:
    """``"./imagesTr/OASIS_0395_0000.nii.gz"`` -> ``"0395"``."""
    match = _L2R_IMAGE.fullmatch(Path(str(entry)).name)
    if match is None:
        raise ValueError(f"unexpected image name {entry!r}")
    return match.group(1)


def _read_l2r_json(path: Path) -> tuple[list[str] | None, list[tuple[str, str]]]:
    """Training subjects and ``registration_val`` pairs of ``OASIS_dataset.json``.

    Without the file: ``(None, official pairs)``. A file without a ``training`` list gives ``None``
    subjects (every image in ``imagesTr/`` is used).
    """
    if not path.is_file():
        return None, list(L2R_OASIS_VAL_PAIRS)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(_l2r_subject(entry["fixed"]), _l2r_subject(entry["moving"])) for entry in info["registration_val"]]
        training = info.get("training")
        subjects = None if training is None else sorted({_l2r_subject(entry["image"]) for entry in training})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise Medi2iInputError(
            f"cannot read the training list and registration_val pairs ({err})",
            path=path,
            expected='"training": [{"image": "./imagesTr/OASIS_<nnnn>_0000.nii.gz", ...}], '
            '"registration_val": [{"fixed": "./imagesTr/OASIS_<nnnn>_0000.nii.gz", "moving": ...}]',
        ) from None
    return subjects, pairs


def _l2r_name(subject: str) -> str:
    return f"OASIS_{subject}_0000.nii.gz"


def _scan_learn2reg_oasis(root: Path, seed: int, skip_incomplete: bool) -> list[Row]:
    del seed  # the validation pairs are official and the training pairs follow a fixed rule
    dataset = "learn2reg_oasis"
    found = sorted(m.group(1) for p in (root / "imagesTr").glob("OASIS_*") if (m := _L2R_IMAGE.fullmatch(p.name)))
    if not found:
        raise _layout_error(
            dataset,
            root,
            f"{root}/imagesTr/OASIS_<nnnn>_0000.nii.gz with labelsTr/ and masksTr/ beside it "
            "(--data-root is the folder that holds imagesTr/ and OASIS_dataset.json)",
        )
    listed, val_pairs = _read_l2r_json(root / "OASIS_dataset.json")
    # the dataset JSON, when present, says which images are labelled training data; others are ignored
    subjects = found if listed is None else listed
    val_subjects = {s for pair in val_pairs for s in pair}
    folders = ["imagesTr", "labelsTr"]
    if (root / "masksTr").is_dir():
        folders.append("masksTr")
    else:
        logger.warning("learn2reg_oasis: no masksTr/ folder under %s; the mask columns are left empty", root)
    missing = {
        subject: [f"{f}/{_l2r_name(subject)}" for f in folders if not (root / f / _l2r_name(subject)).is_file()]
        for subject in sorted(set(subjects) | val_subjects)
    }
    skipped = _drop_incomplete(dataset, root, {k: v for k, v in missing.items() if v}, skip_incomplete)
    train_subjects = [s for s in subjects if s not in val_subjects and s not in skipped]
    # training pairs: each training subject with the next one in id order, oriented like the
    # official validation list (fixed = lower id); loaders that draw random pairs can ignore them
    pairs = [(fixed, moving, "train") for fixed, moving in pairwise(train_subjects)]
    pairs += [(fixed, moving, "val") for fixed, moving in val_pairs if not {fixed, moving} & skipped]
    if not pairs:
        raise _layout_error(dataset, root, "at least two complete subjects", detail="no complete pair")

    def column(folder: str, subject: str) -> str:
        return f"{folder}/{_l2r_name(subject)}" if folder in folders else ""

    return [
        {
            "pair_id": f"OASIS_{fixed}_{moving}",
            "split": split,
            "fixed": column("imagesTr", fixed),
            "moving": column("imagesTr", moving),
            "fixed_label": column("labelsTr", fixed),
            "moving_label": column("labelsTr", moving),
            "fixed_mask": column("masksTr", fixed),
            "moving_mask": column("masksTr", moving),
        }
        for fixed, moving, split in pairs
    ]


# --------------------------------------------------------------------------- registry and entry points

_SEEDED = "seeded 80/10/10 train/val/test by sha256(seed:id) rank"

DATASETS: dict[str, PublicDataset] = {
    "synthrad2023_task1_brain": PublicDataset(
        kind=ManifestKind.SYNTHESIS,
        summary="SynthRAD2023 task 1 brain: MR -> CT with body mask; site = centre A/B/C",
        layout="Task1/brain/<ID>/{mr,ct,mask}.nii.gz, ID like 1BA001",
        split_rule=_SEEDED + ", per centre",
        scan=partial(_scan_synthrad, anatomy="brain"),
    ),
    "synthrad2023_task1_pelvis": PublicDataset(
        kind=ManifestKind.SYNTHESIS,
        summary="SynthRAD2023 task 1 pelvis: MR -> CT with body mask; site = centre A/B/C",
        layout="Task1/pelvis/<ID>/{mr,ct,mask}.nii.gz, ID like 1PA001",
        split_rule=_SEEDED + ", per centre",
        scan=partial(_scan_synthrad, anatomy="pelvis"),
    ),
    "brats2021": PublicDataset(
        kind=ManifestKind.SYNTHESIS,
        summary="BraTS 2021 training cases: T1 -> T2; label = tumour segmentation when every case has one",
        layout="BraTS2021_<nnnnn>/BraTS2021_<nnnnn>_{t1,t2[,seg]}.nii.gz",
        split_rule=_SEEDED,
        scan=_scan_brats2021,
    ),
    "ixi": PublicDataset(
        kind=ManifestKind.SYNTHESIS,
        summary="IXI: T1 -> T2 (T2 must be co-registered to T1 first); site = Guys/HH/IOP",
        layout=f"IXI-T1/IXI<nnn>-<site>-<nnnn>-T1.nii.gz and {IXI_T2_COREG_DIR}/ (or IXI-T2/) ...-T2.nii.gz",
        split_rule=_SEEDED + ", per site; subjects without T2 are skipped",
        scan=_scan_ixi,
        skip_incomplete=True,  # the distribution has a few T1 volumes without a T2
    ),
    "lpba40": PublicDataset(
        kind=ManifestKind.REGISTRATION,
        summary="LPBA40 atlas-to-subject: fixed atlas S01, moving S02..S40, 56 labels",
        layout="delineation_space/S<nn>/S<nn>.delineation.{skullstripped,structure.label}.nii.gz (or .nii/.hdr)",
        split_rule="SPAC: S02-S30 train, S31-S40 val",
        scan=_scan_lpba40,
    ),
    "learn2reg_oasis": PublicDataset(
        kind=ManifestKind.REGISTRATION,
        summary="Learn2Reg task 3 OASIS: inter-subject pairs, 35 labels, brain masks",
        layout="imagesTr/OASIS_<nnnn>_0000.nii.gz, labelsTr/, masksTr/, OASIS_dataset.json",
        split_rule="official val pairs 0395->0396 ... 0413->0414; train = consecutive pairs of the other subjects",
        scan=_scan_learn2reg_oasis,
    ),
}


def get_dataset(name: str) -> PublicDataset:
    """Look a dataset up by name, suggesting the nearest name on a typo.

    Raises:
        Medi2iInputError: for an unknown name.

    Example:
        >>> get_dataset("lpba40").kind.value
        'registration'
    """
    return choose_key(name, DATASETS, field="dataset")


def scan_dataset(dataset: str, data_root: PathLike, *, seed: int = 0, skip_incomplete: bool | None = None) -> list[Row]:
    """Scan a local copy of ``dataset`` and return manifest rows with paths relative to ``data_root``.

    Args:
        dataset: a key of :data:`DATASETS`.
        data_root: the folder laid out as ``data_manifests/README.md`` describes.
        seed: seed of the split for datasets without an official one (ignored otherwise).
        skip_incomplete: leave out (with a logged warning) subjects that lack a file instead of
            raising; ``None`` uses the dataset's default (``True`` only for IXI).

    Returns:
        One dict per subject or pair, every row with the same keys, in a deterministic order.

    Raises:
        Medi2iInputError: unknown dataset, ``data_root`` not a folder, layout not found, or subjects
            lacking files (each listed) when not skipping.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for case in ("1BA001", "1BB001", "1BC001"):
        ...     (root / "Task1/brain" / case).mkdir(parents=True)
        ...     for name in ("mr.nii.gz", "ct.nii.gz", "mask.nii.gz"):
        ...         _ = (root / "Task1/brain" / case / name).write_bytes(b"")
        >>> rows = scan_dataset("synthrad2023_task1_brain", root)
        >>> rows[1]["subject_id"], rows[1]["source"], rows[1]["site"], rows[1]["anatomy"]
        ('1BB001', 'Task1/brain/1BB001/mr.nii.gz', 'B', 'brain')
    """
    spec = get_dataset(dataset)
    root = Path(data_root)
    if not root.is_dir():
        raise Medi2iInputError("data_root is not a folder", path=root, field="data_root", expected=spec.layout)
    skip = spec.skip_incomplete if skip_incomplete is None else skip_incomplete
    rows = spec.scan(root.resolve(), seed, skip)
    bad = sorted({row["split"] for row in rows} - set(SPLITS))
    if bad:  # a scanner bug, not a user error
        raise RuntimeError(f"{dataset} scanner produced unknown splits {bad}")
    return rows


def build_manifest(
    dataset: str,
    data_root: PathLike,
    out_csv: PathLike,
    *,
    seed: int = 0,
    skip_incomplete: bool | None = None,
) -> Path:
    """Scan a local copy of ``dataset`` and write its manifest, validated, to ``out_csv``.

    The CSV is written to a temporary file beside ``out_csv``, read back with
    :func:`medi2i.data.manifest.read_manifest` against ``data_root`` and only then moved into
    place, so ``out_csv`` either holds a manifest that validates or is left untouched.

    Args:
        dataset: a key of :data:`DATASETS`.
        data_root: the folder laid out as ``data_manifests/README.md`` describes.
        out_csv: destination CSV.
        seed: seed of the split for datasets without an official one.
        skip_incomplete: see :func:`scan_dataset`.

    Returns:
        ``out_csv`` as a :class:`~pathlib.Path`.

    Raises:
        Medi2iInputError: see :func:`scan_dataset`; also if the written manifest fails validation.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for case in ("BraTS2021_00000", "BraTS2021_00002"):
        ...     (root / case).mkdir()
        ...     for m in ("t1", "t2", "seg"):
        ...         _ = (root / case / f"{case}_{m}.nii.gz").write_bytes(b"")
        >>> out = build_manifest("brats2021", root, root / "brats.csv")
        >>> out.read_text().splitlines()[0]
        'subject_id,split,source,target,mask,label'
    """
    spec = get_dataset(dataset)
    rows = scan_dataset(dataset, data_root, seed=seed, skip_incomplete=skip_incomplete)
    with atomic_path(out_csv) as tmp:
        write_manifest(tmp, rows, kind=spec.kind)
        try:
            read_manifest(tmp, data_root, kind=spec.kind)
        except Medi2iInputError as err:
            raise Medi2iInputError(
                f"generated manifest failed validation: {err.message}",
                path=out_csv,
                field=err.field,
                found=err.found,
                expected=err.expected,
            ) from None
    logger.info("%s: wrote %d rows to %s", dataset, len(rows), out_csv)
    return Path(out_csv)
