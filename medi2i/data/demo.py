"""The embedded demo cohort: paired T1w/T2w/CT head volumes simulated from the MNI ICBM152 template.

No installable package ships real paired T1w/T2w or MR/CT volumes, so medi2i makes a small
cohort on first use from the real MNI ICBM152 2009a template that the nilearn wheel ships
(see ``docs/demo_cohort.md``; recipe in :mod:`medi2i.data.demo_simulation`). Every bundle's default
manifest points at it, so every command runs on a machine with no data and no internet.

Layout of ``OUT`` (the manifests' ``data_root``; paths in the manifests are relative to it)::

    OUT/3d/sub-000_{t1w,t2w,ct,mask,label}.nii.gz    (X, Y, Z) = 96x112x96 at 2 mm, 192x224x192 at 1 mm
    OUT/2d/sub-000_{t1w,t2w,ct,mask,label}.nii.gz    (X, Y, 1) axial slice nearest MNI z = +12 mm (12.5 at 2 mm)
    OUT/synthesis_t1w_t2w_{3d,2d}.csv    subject_id,split,source,target,mask,label,site,anatomy
    OUT/synthesis_mr_ct_{3d,2d}.csv      (source = T1w, target = CT)
    OUT/registration_{3d,2d}.csv         pair_id,split,fixed,moving,fixed_label,moving_label,fixed_mask,moving_mask
    OUT/NOTICE.txt                       the template's copyright notice and the cohort's limits
    OUT/cohort.json                      recipe version, parameters, sha256 of every file; written last

Files: MR as int16 (value x 1000, white matter ~1000), CT as int16 HU, mask and labels as uint8
(0 background, 1 CSF, 2 GM, 3 WM, 4 bone, 5 scalp soft tissue), all with the template's RAS
affine (the 2D files: the 3D affine moved to the slice), qform = sform. The 2D cohort is simulated
from the template's axial slice with 2D deformations (it is not a slice of the 3D subjects).

Splits depend only on the subject index: with ``N`` subjects, the last ``k`` are ``test``, the
``k`` before them ``val``, the rest ``train``, where ``k = 2`` if ``N >= 6`` else ``1``.
Registration pairs are T1w subject-to-subject pairs inside one split: consecutive subjects
``(s[i] fixed, s[i+1] moving)`` around a ring when the split has 3 or more subjects, one pair
when it has 2, none when it has 1 (so ``N >= 6`` gives pairs in every split). ``pair_id`` is
``<fixed>_<moving>``.

The subjects' deformations are not stored: :func:`subject_ddf` regenerates subject ``k``'s
generating field from ``(seed, k)``.

Honest limits: every subject is a smooth warp of one averaged template, the skull is a
synthetic shell (no face, sinuses or skull base; the brain touches the lowest slice), and T2w
and CT are simulated from tissue maps. Metrics on this cohort look better than on real data and
are not comparable with SynthRAD or Learn2Reg tables. It exists so that every command runs and
every learning check means something; real evaluation uses the user's data through manifests.

The volumes are derived from the MNI ICBM152 2009a template, which carries this notice::

    Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
    Institute, McGill University. Permission to use, copy, modify, and distribute this software and
    its documentation for any purpose and without fee is hereby granted, provided that the above
    copyright notice appear in all copies. The authors and McGill University make no representations
    about the suitability of this software for any purpose. It is provided "as is" without express or
    implied warranty. The authors are not responsible for any data loss, equipment damage, property
    loss, or injury to subjects or patients resulting from the use or misuse of this software package.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medi2i import __version__
from medi2i.data import demo_layout as layout
from medi2i.data.demo_layout import (
    MANIFEST_NAMES,
    MODALITIES,
    RECORD_NAME,
    REGISTRATION_COLUMNS,
    SYNTHESIS_COLUMNS,
    subject_split,
)
from medi2i.data.demo_simulation import generating_ddf, simulate_subject, subject_rngs
from medi2i.data.demo_template import (
    SUPPORTED_RESOLUTIONS,
    DemoTemplate,
    axial_slice_index,
    box_geometry,
    load_template,
    template_dir,
)
from medi2i.errors import Medi2iInputError
from medi2i.io import save_volume
from medi2i.typing import PathLike

__all__ = [
    "MANIFEST_NAMES",
    "MODALITIES",
    "RECIPE_VERSION",
    "REGISTRATION_COLUMNS",
    "SYNTHESIS_COLUMNS",
    "default_demo_dir",
    "demo_manifest",
    "ensure_demo_cohort",
    "generate_demo_cohort",
    "subject_ddf",
    "subject_split",
]

logger = logging.getLogger(__name__)

RECIPE_VERSION = "medi2i-demo-1"  # bump whenever the generated files change
MAX_SUBJECTS = 1000  # three-digit subject ids


@dataclass(frozen=True)
class _Params:
    """The parameters that define a cohort (``cohort.json`` records them; a re-run must match)."""

    subjects: int
    resolution: float
    dims: tuple[int, ...]
    seed: int

    def record(self) -> dict[str, Any]:
        return {
            "recipe": RECIPE_VERSION,
            "subjects": self.subjects,
            "resolution": self.resolution,
            "dims": list(self.dims),
            "seed": self.seed,
        }


def default_demo_dir() -> Path:
    """Where the demo cohort lives by default: ``$MEDI2I_DEMO_DIR`` if set, else ``~/.cache/medi2i/demo``.

    Example:
        >>> isinstance(default_demo_dir(), Path)
        True
    """
    env = os.environ.get("MEDI2I_DEMO_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medi2i" / "demo"


def generate_demo_cohort(
    out: PathLike,
    *,
    subjects: int = 10,
    resolution: float = 2.0,
    dims: tuple[int, ...] = (2, 3),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the demo cohort (volumes, manifests, ``cohort.json``) into ``out``; idempotent.

    If ``out`` already holds a complete cohort with the same parameters, every file is checked
    against the sha256 in ``cohort.json`` and nothing is written; subjects whose files are missing
    or altered are regenerated (generation is deterministic). ``cohort.json`` is written last, so a
    run that was killed leaves no record and the next call regenerates the cohort. Concurrent
    callers on one folder are serialised with a file lock (POSIX).

    Args:
        out: destination folder (created if needed); becomes the manifests' ``data_root``.
        subjects: number of subjects, 3 to 1000 (default 10).
        resolution: voxel size in mm, 2.0 (default, 96x112x96) or 1.0 (opt-in, 192x224x192).
        dims: which cohorts to write: 3 (volumes), 2 (axial slices), or both (default ``(2, 3)``).
        seed: cohort seed (>= 0); subject ``k`` depends only on ``(seed, k)``.
        overwrite: replace a cohort with other parameters, or write into a non-empty folder that
            holds no cohort. Only the cohort's own files are ever deleted.
        progress: show a tqdm progress bar on stderr.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        Medi2iInputError: invalid parameters; ``out`` holds a cohort with other parameters (or a
            non-cohort folder's files) and ``overwrite`` is false; nilearn or its template missing.
            Raised before anything is written.

    Example:
        >>> root = generate_demo_cohort("/tmp/medi2i_demo", subjects=3, dims=(2,))  # doctest: +SKIP
        >>> sorted(p.name for p in root.glob("*.csv"))  # doctest: +SKIP
        ['registration_2d.csv', 'synthesis_mr_ct_2d.csv', 'synthesis_t1w_t2w_2d.csv']
    """
    params = _validated_params(subjects=subjects, resolution=resolution, dims=dims, seed=seed)
    root = Path(out).expanduser()
    _check_destination(root, overwrite)
    if not (root / RECORD_NAME).is_file():
        template_dir()  # nothing to verify, so the template is needed: fail before creating anything
    root.mkdir(parents=True, exist_ok=True)
    with layout.locked(root):
        record = layout.read_record(root)
        rebuild: set[tuple[int, int]] | None = None  # (dim, index) of the subjects to write; None: all
        if record is not None and layout.record_params(record) == params.record():
            damaged = layout.damaged_files(root, record)
            if not damaged:
                logger.debug("demo cohort at %s verified", root)
                return root
            logger.warning("demo cohort at %s: %d file(s) missing or altered, regenerating them", root, len(damaged))
            rebuild = {
                job for job, names in layout.subject_files(params.subjects, params.dims).items() if damaged & set(names)
            }
        elif record is not None and not overwrite:
            raise Medi2iInputError(
                "a demo cohort with other parameters already lives here; pass overwrite=True "
                "(CLI: --overwrite) to replace it, or choose another folder",
                path=root / RECORD_NAME,
                found=_describe(layout.record_params(record)),
                expected=_describe(params.record()),
            )
        template_dir()  # fail on a missing nilearn before deleting anything
        (root / RECORD_NAME).unlink(missing_ok=True)  # from here until the end the folder reads as incomplete
        if rebuild is None:
            layout.remove_own_files(root)
        _write_cohort(root, params, rebuild, progress)
    return root


def ensure_demo_cohort(out: PathLike | None = None, **kwargs: Any) -> Path:
    """Return the demo cohort folder, generating it first if it is absent or incomplete.

    Parameters not given are taken from the existing ``cohort.json`` (so any complete cohort
    is accepted), or are :func:`generate_demo_cohort`'s defaults when there is none. Parameters
    given must match an existing cohort (unless ``overwrite=True``). A progress bar is shown when
    stderr is a terminal unless ``progress`` is given.

    Args:
        out: the cohort folder (default :func:`default_demo_dir`).
        **kwargs: keyword arguments of :func:`generate_demo_cohort`.

    Returns:
        The cohort folder.

    Raises:
        TypeError: an unknown keyword argument.
        Medi2iInputError: as :func:`generate_demo_cohort`.

    Example:
        >>> root = ensure_demo_cohort()  # doctest: +SKIP
        >>> (root / "cohort.json").is_file()  # doctest: +SKIP
        True
    """
    allowed = {"subjects", "resolution", "dims", "seed", "overwrite", "progress"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"ensure_demo_cohort() got unexpected keyword argument(s) {unknown}; allowed {sorted(allowed)}")
    root = default_demo_dir() if out is None else Path(out).expanduser()
    options = dict(kwargs)
    options.setdefault("progress", sys.stderr.isatty())
    record = layout.read_record(root)
    if record is not None and not options.get("overwrite", False):
        recorded = {key: value for key, value in layout.record_params(record).items() if key != "recipe"}
        recorded["dims"] = tuple(recorded["dims"])
        options = {**recorded, **options}
    return generate_demo_cohort(root, **options)


def demo_manifest(name: str, out: PathLike | None = None) -> Path:
    """Path of one of the demo cohort's manifests, generating the cohort first if needed.

    Args:
        name: one of :data:`MANIFEST_NAMES` (``.csv`` optional), e.g. ``"synthesis_t1w_t2w_3d"``.
        out: the cohort folder (default :func:`default_demo_dir`); the manifest's ``data_root``.

    Returns:
        ``out / f"{name}.csv"``.

    Raises:
        Medi2iInputError: unknown name, or an existing cohort without that manifest's 2D/3D part.

    Example:
        >>> demo_manifest("synthesis_mr_ct_3d").name  # doctest: +SKIP
        'synthesis_mr_ct_3d.csv'
    """
    stem = name[: -len(".csv")] if name.endswith(".csv") else name
    if stem not in MANIFEST_NAMES:
        close = difflib.get_close_matches(stem, MANIFEST_NAMES, n=1)
        raise Medi2iInputError(
            "unknown demo manifest" + (f"; did you mean {close[0]!r}?" if close else ""),
            field="name",
            found=repr(name),
            expected=f"one of {list(MANIFEST_NAMES)}",
        )
    root = default_demo_dir() if out is None else Path(out).expanduser()
    dim = int(stem[-2])
    record = layout.read_record(root)
    if record is not None and dim not in layout.record_params(record)["dims"]:
        raise Medi2iInputError(
            f"the demo cohort here has no {dim}D part, so no {stem}.csv; regenerate it with both parts "
            f"(medi2i demo-data --out {root} --dims 2,3 --overwrite)",
            path=root / RECORD_NAME,
            field="dims",
            found=layout.record_params(record)["dims"],
            expected=f"dims including {dim}",
        )
    return ensure_demo_cohort(root) / f"{stem}.csv"


def subject_ddf(seed: int, index: int, *, spatial_dims: int = 3, resolution: float = 2.0) -> np.ndarray:
    """Regenerate the field that generated subject ``index`` of the cohort made with ``seed``.

    The field is the pull displacement on the subject grid (docs/conventions.md): the
    subject's tissue maps are ``template(x + u(x))``, i.e. ``phi = id + u`` maps subject voxels to
    template voxels. The brain of moving subject ``j`` therefore aligns with fixed subject ``i``
    under the pull field ``phi_j^-1 o phi_i - id`` (on the fixed grid). Skull and scalp shells are
    drawn per subject, so they follow the field only approximately.

    Args:
        seed: the cohort seed.
        index: subject index.
        spatial_dims: 3 for the volume cohort, 2 for the axial-slice cohort.
        resolution: the cohort's voxel size in mm.

    Returns:
        ``(spatial_dims, X, Y[, Z])`` float32 displacement in voxels, channel order = array axes.

    Raises:
        Medi2iInputError: invalid arguments.

    Example:
        >>> subject_ddf(0, 1, spatial_dims=2).shape
        (2, 96, 112)
    """
    params = _validated_params(subjects=MAX_SUBJECTS, resolution=resolution, dims=(spatial_dims,), seed=seed)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < MAX_SUBJECTS:
        raise Medi2iInputError(
            "invalid subject index", field="index", found=index, expected=f"0 <= index < {MAX_SUBJECTS}"
        )
    shape, _ = box_geometry(params.resolution)
    with torch.no_grad():
        rng = subject_rngs(params.seed, int(index), spatial_dims)[0]
        return generating_ddf(rng, shape[:spatial_dims], params.resolution).numpy()


# --------------------------------------------------------------------------------------------


def _validated_params(*, subjects: Any, resolution: Any, dims: Any, seed: Any) -> _Params:
    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(subjects) or not 3 <= subjects <= MAX_SUBJECTS:
        raise Medi2iInputError(
            "the demo cohort needs at least 3 subjects (one per split)",
            field="subjects",
            found=subjects,
            expected=f"an integer from 3 to {MAX_SUBJECTS}",
        )
    is_number = isinstance(resolution, (int, float)) and not isinstance(resolution, bool)
    if not is_number or resolution not in SUPPORTED_RESOLUTIONS:
        raise Medi2iInputError(
            "unsupported demo cohort resolution",
            field="resolution",
            found=resolution,
            expected=f"one of {[int(r) for r in SUPPORTED_RESOLUTIONS]} (mm)",
        )
    dims_ok = isinstance(dims, Sequence) and not isinstance(dims, str) and len(dims) > 0
    if not dims_ok or not all(is_int(d) and d in (2, 3) for d in dims) or len(set(dims)) != len(dims):
        raise Medi2iInputError(
            "invalid demo cohort dimensions", field="dims", found=dims, expected="(2,), (3,) or (2, 3)"
        )
    if not is_int(seed) or not 0 <= seed < 2**63:
        raise Medi2iInputError("invalid seed", field="seed", found=seed, expected="an integer >= 0")
    dims = tuple(sorted(int(d) for d in dims))
    return _Params(subjects=int(subjects), resolution=float(resolution), dims=dims, seed=int(seed))


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={params[key]}" for key in ("subjects", "resolution", "dims", "seed", "recipe"))


def _check_destination(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise Medi2iInputError("the demo cohort destination is a file", path=root, found="a file", expected="a folder")
    if overwrite or not root.is_dir() or (root / RECORD_NAME).is_file():
        return
    foreign = sorted(p.name for p in root.iterdir() if not layout.is_own_name(p.name))
    if foreign:
        raise Medi2iInputError(
            "folder is not empty and holds no demo cohort (no cohort.json); choose an empty or new folder, "
            "or pass overwrite=True (CLI: --overwrite) to write the cohort beside these files",
            path=root,
            found=foreign[:5] + (["..."] if len(foreign) > 5 else []),
            expected="an empty folder or an existing demo cohort",
        )


def _write_cohort(root: Path, params: _Params, rebuild: set[tuple[int, int]] | None, progress: bool) -> None:
    """Simulate and write the subjects in ``rebuild`` (all if None), then manifests, notice and record."""
    all_files = layout.subject_files(params.subjects, params.dims)
    jobs = sorted(all_files if rebuild is None else rebuild, key=lambda job: (-job[0], job[1]))  # 3D first
    templates: dict[int, DemoTemplate] = {}
    with tqdm(total=len(jobs), desc="medi2i demo cohort", unit="subject", disable=not progress) as bar:
        for dim, index in jobs:
            if dim not in templates:
                volume = load_template(params.resolution)
                templates[dim] = volume if dim == 3 else volume.axial_slice()
            subject = simulate_subject(templates[dim], params.seed, index)
            for modality in MODALITIES:
                array, dtype = layout.encode(subject, modality)
                if dim == 2:
                    array = array[..., None]  # 2D files are (X, Y, 1) so they keep a full 3D affine
                save_volume(
                    root / layout.relative_path(dim, index, modality),
                    array,
                    templates[dim].affine,
                    dtype=dtype,
                    description=f"medi2i demo {layout.subject_id(index)} {modality}; {layout.SHORT_NOTICE}",
                )
            bar.update(1)
    written = [name for names in all_files.values() for name in names]
    written += layout.write_manifests(root, params.subjects, params.dims)
    written.append(layout.write_notice(root))
    shape, _ = box_geometry(params.resolution)
    record = params.record() | {
        "medi2i_version": __version__,
        "template": "MNI ICBM152 2009a nonlinear symmetric (nilearn wheel); " + layout.SHORT_NOTICE,
        "shapes": {f"{dim}d": list(shape if dim == 3 else shape[:2] + (1,)) for dim in params.dims},
        "axial_slice_index": axial_slice_index(params.resolution),
        "splits": {layout.subject_id(i): subject_split(i, params.subjects) for i in range(params.subjects)},
    }
    layout.write_record(root, record, written)
