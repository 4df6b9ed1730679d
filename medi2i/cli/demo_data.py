"""``medi2i demo-data``: generate (or verify) the embedded demo cohort.

A thin wrapper around :func:`medi2i.data.demo.generate_demo_cohort`: arguments are parsed as
strings and validated here, so every bad value is a one-line error with exit code 2 and nothing
is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medi2i.errors import Medi2iInputError

DESCRIPTION = """\
Generate the embedded demo cohort: paired T1w, T2w and CT head volumes with head masks and
6-class labels (0 background, 1 CSF, 2 GM, 3 WM, 4 bone, 5 scalp soft tissue), simulated from
the MNI ICBM152 2009a template that the nilearn wheel ships (no download). Each subject is a
random diffeomorphic warp of the template with its own skull and scalp shells, tissue contrast
jitter, bias fields and noise. Writes 3D volumes (3d/), 2D axial slices (2d/), synthesis and
registration manifests (paths relative to --out) and cohort.json.

Running it again with the same arguments only verifies the files (sha256) and regenerates
missing or altered ones; other arguments on an existing cohort are an error unless --overwrite.
The default cohort (10 subjects, 2 mm, 2D + 3D) takes about 10-25 s on 2 CPU cores and ~40 MB.

Template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University (full notice in NOTICE.txt in the output folder).
Simulated data: metrics on it are not comparable with results on real scans.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the embedded demo cohort (T1w/T2w/CT from the MNI template)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="destination folder, the manifests' data_root (default: $MEDI2I_DEMO_DIR, else ~/.cache/medi2i/demo)",
    )
    parser.add_argument("--subjects", default="10", metavar="N", help="number of subjects, at least 3 (default: 10)")
    parser.add_argument(
        "--resolution",
        default="2",
        metavar="{1,2}",
        help="voxel size in mm: 2 (96x112x96, default) or 1 (192x224x192, ~10x slower, ~8x larger)",
    )
    parser.add_argument(
        "--dims", default="2,3", metavar="2,3", help="which cohorts: 3 (volumes), 2 (axial slices) or 2,3 (default)"
    )
    parser.add_argument("--seed", default="0", metavar="S", help="cohort seed, an integer >= 0 (default: 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a cohort made with other arguments (only the cohort's own files are deleted)",
    )
    parser.set_defaults(run=run)


def _integer(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Medi2iInputError("not an integer", field=flag, found=repr(value), expected="an integer") from None


def _resolution(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise Medi2iInputError("not a number", field="--resolution", found=repr(value), expected="1 or 2") from None


def _dims(value: str) -> tuple[int, ...]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or any(part not in ("2", "3") for part in parts) or len(set(parts)) != len(parts):
        raise Medi2iInputError("invalid dimensions", field="--dims", found=repr(value), expected="2, 3 or 2,3")
    return tuple(int(part) for part in parts)


def run(args: argparse.Namespace) -> int:
    """Validate the arguments, generate (or verify) the cohort and print a two-line summary."""
    # imported here: the generator pulls in MONAI (~4 s), which other subcommands' --help must not pay
    from medi2i.data.demo import MANIFEST_NAMES, default_demo_dir, generate_demo_cohort

    subjects = _integer(args.subjects, "--subjects")
    resolution = _resolution(args.resolution)
    dims = _dims(args.dims)
    seed = _integer(args.seed, "--seed")
    out = args.out if args.out is not None else default_demo_dir()
    start = time.perf_counter()
    root = generate_demo_cohort(
        out,
        subjects=subjects,
        resolution=resolution,
        dims=dims,
        seed=seed,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
    )
    elapsed = time.perf_counter() - start
    parts = " + ".join(f"{d}D" for d in sorted(dims, reverse=True))
    print(
        f"demo cohort ready in {root}: {subjects} subjects, {parts}, {resolution:g} mm, seed {seed} ({elapsed:.1f} s)"
    )
    names = [name for name in MANIFEST_NAMES if int(name[-2]) in dims]
    print("manifests (data_root = that folder): " + ", ".join(f"{name}.csv" for name in names))
    return 0
