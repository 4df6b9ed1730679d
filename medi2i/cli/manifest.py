"""``medi2i manifest``: write the manifest of a public dataset from a local copy.

The local copy must be laid out as ``data_manifests/README.md`` describes (the names the
dataset is distributed with). The manifest is validated (every path exists, ids unique, splits
known) before it is moved to ``--out``; the volumes themselves are checked afterwards with
``medi2i check --manifest OUT --data-root DIR``. ``--list`` shows the supported datasets.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="medi2i")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["manifest", "lpba40", "--data-root", "/data/LPBA40", "--out", "lpba40.csv"])
    >>> args.dataset, args.seed, args.skip_incomplete
    ('lpba40', 0, None)
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from medi2i.data.manifest import SPLITS, ManifestKind
from medi2i.data.public_datasets import DATASETS, build_manifest, get_dataset, scan_dataset
from medi2i.errors import Medi2iInputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``manifest`` subcommand."""
    parser = subparsers.add_parser(
        "manifest",
        help="write the manifest CSV of a public dataset from a local copy",
        description=(
            "Scan a local copy of a public dataset (laid out as data_manifests/README.md describes) and write a "
            "medi2i manifest with paths relative to --data-root. Official splits are used where they exist "
            "(LPBA40: SPAC; Learn2Reg OASIS: the task 3 validation pairs); otherwise a seeded 80/10/10 split "
            "that depends only on the subject ids and --seed. The CSV is validated before it is written. "
            "Run `medi2i manifest --list` for the datasets and their layouts."
        ),
        epilog="example: medi2i manifest lpba40 --data-root /data/LPBA40 --out lpba40.csv",
    )
    parser.add_argument("dataset", nargs="?", metavar="DATASET", help=f"one of: {', '.join(DATASETS)}")
    parser.add_argument("--data-root", type=Path, metavar="DIR", help="folder holding the local copy of the dataset")
    parser.add_argument("--out", type=Path, metavar="CSV", help="manifest to write (replaced atomically)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split for datasets without an official one (default: 0)"
    )
    parser.add_argument(
        "--skip-incomplete",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave out subjects that lack a file (with a warning) instead of failing; "
        "default: fail, except for IXI, whose distribution has T1 volumes without T2",
    )
    parser.add_argument("--dry-run", action="store_true", help="scan and print the split counts without writing --out")
    parser.add_argument("--list", action="store_true", help="list the supported datasets, their layouts and splits")
    parser.set_defaults(run=run)


def _print_list() -> None:
    for name, spec in DATASETS.items():
        print(f"{name} ({spec.kind.value})")
        print(f"    {spec.summary}")
        print(f"    layout under --data-root: {spec.layout}")
        print(f"    split: {spec.split_rule}")
        print(f"    template: data_manifests/{name}.csv")


def run(args: argparse.Namespace) -> int:
    """Write (or with ``--dry-run`` only scan) the manifest; return the exit code."""
    if args.list:
        _print_list()
        return 0
    if args.dataset is None:
        raise Medi2iInputError("no dataset given", field="DATASET", expected=f"one of {list(DATASETS)} (or --list)")
    spec = get_dataset(args.dataset)  # before the other checks, so a typo is reported first
    if args.data_root is None:
        raise Medi2iInputError("--data-root is required", field="--data-root", expected=f"a folder with {spec.layout}")
    if args.dry_run:
        rows = scan_dataset(args.dataset, args.data_root, seed=args.seed, skip_incomplete=args.skip_incomplete)
        destination = "not written (--dry-run)"
    elif args.out is None:
        raise Medi2iInputError("--out is required", field="--out", expected="the manifest CSV to write (or --dry-run)")
    else:
        out = build_manifest(
            args.dataset, args.data_root, args.out, seed=args.seed, skip_incomplete=args.skip_incomplete
        )
        with open(out, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        destination = f"written to {out}"
    counts = Counter(row["split"] for row in rows)
    per_split = ", ".join(f"{split} {counts[split]}" for split in SPLITS if counts[split])
    noun = "pairs" if spec.kind is ManifestKind.REGISTRATION else "subjects"
    print(f"{args.dataset}: {len(rows)} {noun} ({per_split}); {destination}")
    return 0
