"""``medi2i evaluate``: score synthesis outputs (SynthRAD / MR preset) or registration fields (Learn2Reg).

Two sub-subcommands, each for one case, a list of cases, or a whole manifest::

    medi2i evaluate synthesis --pred sct.nii.gz --target ct.nii.gz --mask mask.nii.gz --preset ct --out results/
    medi2i evaluate synthesis --manifest m.csv --data-root data/ --pred-dir preds/ --split test --out results/
    medi2i evaluate registration --ddf disp_0001.nii.gz --fixed-label f.nii.gz --moving-label m.nii.gz --out results/
    medi2i evaluate registration --manifest pairs.csv --data-root data/ --pred-dir fields/ --convention l2r --out r/

Results: ``<out>/<kind>_cases.csv``, ``<kind>_summary.csv``, ``<kind>_summary.json`` (see
:mod:`medi2i.metrics.evaluate`). Every input is validated before anything is written.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from medi2i.errors import Medi2iInputError

_SYNTHESIS_HELP = """\
Score synthetic images against their references.

  --preset ct   SynthRAD2023: MAE in HU (masked, unclipped); PSNR and SSIM clipped to [-1024, 3000] HU,
                data range 4024, SSIM with a 7-voxel uniform window averaged over the mask.
  --preset mr   both images mapped to [0, 1] by the reference's 0.5/99.5th percentiles inside the mask,
                then the same recipe with data range 1.

Cases come from --pred/--target[/--mask] (one or more, in the same order) or from --manifest with
--data-root; predictions of manifest rows are <pred-dir>/<subject_id>.nii.gz, or a 'pred' column.
"""

_REGISTRATION_HELP = """\
Score displacement fields (Learn2Reg layout (X, Y, Z, 3), voxel units, on the fixed grid, pull
convention): Dice and HD95 of the moving labels warped by nearest neighbour at x + u(x), the Jacobian
determinant's folding percentage, mean/std and SDlogJ (standard and Learn2Reg's).

Cases come from --ddf/--fixed-label/--moving-label (one or more, in the same order) or from --manifest
with --data-root; fields of manifest rows are <pred-dir>/disp_<pair_id>.nii.gz (.nii, .npz), or a 'ddf'
column.
"""


def _label_list(text: str) -> list[int]:
    """Parse ``"1 2 5-8,10"`` style label lists (spaces or commas, inclusive ranges)."""
    labels: list[int] = []
    for token in filter(None, re.split(r"[,\s]+", text.strip())):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not match:
            raise argparse.ArgumentTypeError(f"bad label '{token}' (expected integers or ranges like 1-35)")
        start, stop = int(match.group(1)), int(match.group(2) or match.group(1))
        if stop < start:
            raise argparse.ArgumentTypeError(f"empty label range '{token}'")
        labels.extend(range(start, stop + 1))
    return labels


def _add_common(parser: argparse.ArgumentParser, pred_dir_help: str) -> None:
    group = parser.add_argument_group("many cases from a manifest")
    group.add_argument("--manifest", type=Path, metavar="CSV", help="manifest CSV (paths relative to --data-root)")
    group.add_argument("--data-root", type=Path, metavar="DIR", help="folder the manifest's paths are relative to")
    group.add_argument("--pred-dir", type=Path, metavar="DIR", help=pred_dir_help)
    group.add_argument("--split", choices=("train", "val", "test"), help="evaluate only this split")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder for <kind>_cases.csv, <kind>_summary.csv and <kind>_summary.json",
    )
    parser.add_argument(
        "--id",
        dest="ids",
        nargs="+",
        metavar="NAME",
        help="case ids for explicit files (default: the prediction file names)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` and its ``synthesis`` / ``registration`` sub-subcommands."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score synthesis outputs (SynthRAD) or registration fields (Learn2Reg)",
        description="Score predictions with the metrics the field publishes; writes per-case and summary tables.",
    )
    kinds = parser.add_subparsers(dest="evaluate_kind", metavar="KIND", required=True)

    syn = kinds.add_parser(
        "synthesis",
        help="MAE / PSNR / SSIM of synthetic images (SynthRAD2023 or MR preset)",
        description=_SYNTHESIS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = syn.add_argument_group("explicit files")
    files.add_argument("--pred", type=Path, nargs="+", metavar="NIFTI", help="predicted image(s)")
    files.add_argument("--target", type=Path, nargs="+", metavar="NIFTI", help="reference image(s), same order")
    files.add_argument("--mask", type=Path, nargs="+", metavar="NIFTI", help="mask(s), same order (optional)")
    syn.add_argument("--preset", choices=("ct", "mr"), default="ct", help="intensity convention (default: ct)")
    _add_common(syn, "folder with <subject_id>.nii.gz predictions (default: the manifest's 'pred' column)")
    syn.set_defaults(run=run)

    reg = kinds.add_parser(
        "registration",
        help="Dice / HD95 / Jacobian statistics of displacement fields",
        description=_REGISTRATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = reg.add_argument_group("explicit files")
    files.add_argument("--ddf", type=Path, nargs="+", metavar="FILE", help="displacement field(s), .nii.gz or .npz")
    files.add_argument("--fixed-label", type=Path, nargs="+", metavar="NIFTI", help="fixed label map(s), same order")
    files.add_argument("--moving-label", type=Path, nargs="+", metavar="NIFTI", help="moving label map(s), same order")
    files.add_argument(
        "--fixed-mask", type=Path, nargs="+", metavar="NIFTI", help="fixed mask(s) for --masked-jacobian (optional)"
    )
    reg.add_argument(
        "--labels",
        type=_label_list,
        action="extend",
        metavar="LIST",
        help="labels to score, e.g. '1-35' or '2 4 7' (default: every label present)",
    )
    reg.add_argument(
        "--convention",
        choices=("strict", "reference", "l2r"),
        default="strict",
        help="missing labels: strict = worst case and kept in the mean (default); reference = skip "
        "labels absent from the fixed map; l2r = Learn2Reg (skip if absent from fixed or moving)",
    )
    reg.add_argument(
        "--hd95-units",
        choices=("mm", "voxel"),
        help="HD95 in mm (fixed spacing) or voxels (default: voxel for l2r, mm otherwise)",
    )
    reg.add_argument(
        "--masked-jacobian",
        action="store_true",
        help="restrict Jacobian statistics to the fixed mask (Learn2Reg masked evaluation)",
    )
    _add_common(reg, "folder with disp_<pair_id>.nii.gz fields (default: the manifest's 'ddf' column)")
    reg.set_defaults(run=run)
    return parser


def _explicit(
    args: argparse.Namespace, names: tuple[str, ...], optional: str
) -> tuple[list[list[Path]], list[Path | None]]:
    """Columns of explicit files, checked for equal lengths; the optional column padded with None."""
    count = len(getattr(args, names[0]))
    for name in (*names[1:], optional):
        value = getattr(args, name)
        if value is not None and len(value) != count:
            flag, first = "--" + name.replace("_", "-"), "--" + names[0].replace("_", "-")
            raise Medi2iInputError(
                f"{flag} needs one file per {first}", field=flag, found=f"{len(value)} files", expected=f"{count} files"
            )
    extra = getattr(args, optional)
    return [list(getattr(args, name)) for name in names], (list(extra) if extra is not None else [None] * count)


def _default_id(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _ids(args: argparse.Namespace, paths: list[Path]) -> list[str]:
    if args.ids is None:
        return [_default_id(p) for p in paths]
    if len(args.ids) != len(paths):
        raise Medi2iInputError(
            "--id needs one name per case", field="--id", found=f"{len(args.ids)} names", expected=f"{len(paths)} names"
        )
    return list(args.ids)


def _check_mode(args: argparse.Namespace, required: tuple[str, ...]) -> bool:
    """True for manifest mode, False for explicit files; mixing them or leaving one out is an input error."""
    explicit = [name for name in required if getattr(args, name) is not None]
    if args.manifest is not None:
        if explicit:
            raise Medi2iInputError(
                "give either --manifest or explicit files, not both", field=f"--{explicit[0].replace('_', '-')}"
            )
        if args.data_root is None:
            raise Medi2iInputError("--manifest needs --data-root", field="--data-root")
        return True
    for name in ("data_root", "pred_dir", "split"):
        if getattr(args, name) is not None:
            raise Medi2iInputError(
                f"--{name.replace('_', '-')} only applies with --manifest", field=f"--{name.replace('_', '-')}"
            )
    missing = [name for name in required if getattr(args, name) is None]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in required)
        raise Medi2iInputError(
            f"missing --{missing[0].replace('_', '-')}",
            field="arguments",
            expected=f"{flags} (or --manifest with --data-root)",
        )
    return False


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise Medi2iInputError("output path exists and is not a folder", path=out, field="--out")


def _print_summary(result) -> None:
    shown = [r for r in result.summary.to_dict(orient="records") if not r["metric"].split("_")[-1].isdigit()]
    print(f"{len(result.cases)} case(s)")
    for row in shown:
        print(
            f"  {row['metric']:<16} mean {row['mean']:.6g}  std {row['std']:.6g}  median {row['median']:.6g}  "
            f"p30 {row['p30']:.6g}  (n={row['n']})"
        )
    for path in result.files.values():
        print(f"wrote {path}")


def _run_synthesis(args: argparse.Namespace):
    from medi2i.metrics import evaluate as ev

    if _check_mode(args, ("pred", "target")):
        if args.ids is not None or args.mask is not None:
            raise Medi2iInputError("--id and --mask apply to explicit files only", field="--manifest")
        cases = ev.synthesis_cases_from_manifest(
            args.manifest, args.data_root, pred_dir=args.pred_dir, split=args.split
        )
    else:
        (preds, targets), masks = _explicit(args, ("pred", "target"), "mask")
        ids = _ids(args, preds)
        cases = [ev.SynthesisCase(*row) for row in zip(ids, preds, targets, masks, strict=True)]
    return ev.evaluate_synthesis(cases, args.out, preset=args.preset)


def _run_registration(args: argparse.Namespace):
    from medi2i.metrics import evaluate as ev

    if _check_mode(args, ("ddf", "fixed_label", "moving_label")):
        if args.ids is not None or args.fixed_mask is not None:
            raise Medi2iInputError("--id and --fixed-mask apply to explicit files only", field="--manifest")
        cases = ev.registration_cases_from_manifest(
            args.manifest, args.data_root, pred_dir=args.pred_dir, split=args.split
        )
    else:
        (ddfs, fixed, moving), masks = _explicit(args, ("ddf", "fixed_label", "moving_label"), "fixed_mask")
        ids = _ids(args, ddfs)
        cases = [ev.RegistrationCase(*row) for row in zip(ids, ddfs, fixed, moving, masks, strict=True)]
    return ev.evaluate_registration(
        cases,
        args.out,
        labels=args.labels,
        convention=args.convention,
        hd95_units=args.hd95_units,
        masked_jacobian=args.masked_jacobian,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``medi2i evaluate synthesis|registration``; returns the exit code."""
    _check_out(args.out)
    result = _run_synthesis(args) if args.evaluate_kind == "synthesis" else _run_registration(args)
    _print_summary(result)
    return 0
