"""``medi2i check``: validate volumes (or a whole manifest) and print a short header summary.

Every file goes through the same loader the pipelines use (:func:`medi2i.io.load_volume`), so
a file that passes ``check`` will load in training and inference. With a manifest, every row is
validated (paths first, then each volume, then that each pair shares one grid) before anything
is reported as fine. Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medi2i.data.manifest import ManifestKind, detect_kind, read_manifest
from medi2i.errors import Medi2iInputError
from medi2i.io import check_same_grid, describe, load_volume

#: volume kind per manifest path column
COLUMN_KINDS = {
    "source": "image",
    "target": "image",
    "mask": "mask",
    "label": "label",
    "fixed": "image",
    "moving": "image",
    "fixed_label": "label",
    "moving_label": "label",
    "fixed_mask": "mask",
    "moving_mask": "mask",
}
#: (reference column, column that must share its grid)
SAME_GRID = {
    ManifestKind.SYNTHESIS: [("source", "target"), ("source", "mask"), ("source", "label")],
    # fixed and moving must share a grid too: medi2i registers in array space (pre-aligned pairs)
    ManifestKind.REGISTRATION: [
        ("fixed", "moving"),
        ("fixed", "fixed_label"),
        ("fixed", "fixed_mask"),
        ("moving", "moving_label"),
        ("moving", "moving_mask"),
    ],
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate volumes or a manifest and print a header summary",
        description=(
            "Validate volumes (NIfTI, or any format ITK reads) the way medi2i loads them, and print shape, spacing, "
            "orientation, dtype and value range. With --manifest, validate every row of a manifest: paths, each "
            "volume, and that source/target (or image/label) pairs share one grid. Exit code 2 on the first problem."
        ),
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="volumes to check")
    parser.add_argument(
        "--kind", choices=("image", "label", "mask"), default="image", help="how to validate the PATHs (default: image)"
    )
    parser.add_argument("--manifest", type=Path, help="a synthesis or registration manifest CSV")
    parser.add_argument("--data-root", type=Path, help="folder the manifest's relative paths are resolved against")
    parser.add_argument("--split", choices=("train", "val", "test"), help="check only one split of the manifest")
    parser.set_defaults(run=run)


def _format(summary: dict) -> str:
    low, high = summary["value_range"]
    spacing = "x".join(f"{s:g}" for s in summary["spacing"])
    shape = "x".join(str(s) for s in summary["shape"])
    return (
        f"{summary['path']}: {summary['kind']} {shape} @ {spacing} mm, {summary['orientation']}, "
        f"{summary['dtype']}, range [{low:g}, {high:g}]"
    )


def _check_manifest(manifest: Path, data_root: Path | None, split: str | None) -> int:
    if data_root is None:
        raise Medi2iInputError("--manifest needs --data-root", field="--data-root", expected="a folder")
    rows = read_manifest(manifest, data_root, split=split)
    if not rows:
        raise Medi2iInputError("no rows in the selected split", path=manifest, field="--split", found=split)
    kind = detect_kind(list(rows[0]), manifest)
    id_column = "subject_id" if kind is ManifestKind.SYNTHESIS else "pair_id"
    for row in rows:
        volumes = {col: load_volume(path, kind=COLUMN_KINDS[col]) for col, path in row.items() if col in COLUMN_KINDS}
        for reference, other in SAME_GRID[kind]:
            if reference in volumes and other in volumes:
                check_same_grid(volumes[reference], volumes[other], names=(reference, other))
        shapes = "; ".join(f"{col} {'x'.join(map(str, v.shape))}" for col, v in volumes.items())
        print(f"{row[id_column]} ({row['split']}): {shapes}")
    print(f"{manifest}: {len(rows)} rows OK")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.paths and args.manifest is None:
        raise Medi2iInputError("nothing to check", field="PATH / --manifest", expected="volume paths or --manifest CSV")
    for path in args.paths:
        print(_format(describe(load_volume(path, kind=args.kind))))
    if args.manifest is not None:
        _check_manifest(args.manifest, args.data_root, args.split)
    return 0
