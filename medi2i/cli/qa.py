"""``medi2i qa``: visual QA reports (self-contained HTML + PNG) for synthesis outputs or registration fields.

::

    medi2i qa synthesis --source t1.nii.gz --pred sct.nii.gz --target ct.nii.gz --mask mask.nii.gz --out qa/
    medi2i qa synthesis --manifest m.csv --data-root data/ --pred-dir preds/ --split test --out qa/
    medi2i qa registration --fixed f.nii.gz --moving m.nii.gz --ddf disp.nii.gz \\
        --fixed-label fl.nii.gz --moving-label ml.nii.gz --out qa/
    medi2i qa registration --manifest pairs.csv --data-root data/ --pred-dir fields/ --out qa/

Writes ``<out>/index.html`` (every case, worst first), ``<out>/qa_cases.csv`` and
``<out>/cases/<case_id>.{html,png}`` (see :mod:`medi2i.viz.report`). Predictions of manifest rows
follow ``medi2i evaluate``: ``<pred-dir>/<subject_id>.nii.gz`` and ``<pred-dir>/disp_<pair_id>.nii.gz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medi2i.errors import Medi2iInputError

_EPILOG = "Open <out>/index.html in a browser; it needs no network and no other file than the case pages."


def _add_common(parser: argparse.ArgumentParser, pred_dir_help: str) -> None:
    group = parser.add_argument_group("many cases from a manifest")
    group.add_argument("--manifest", type=Path, metavar="CSV", help="manifest CSV (paths relative to --data-root)")
    group.add_argument("--data-root", type=Path, metavar="DIR", help="folder the manifest's paths are relative to")
    group.add_argument("--pred-dir", type=Path, metavar="DIR", help=pred_dir_help)
    group.add_argument("--split", choices=("train", "val", "test"), help="report only this split")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder (created)")
    parser.add_argument("--id", dest="case_id", metavar="NAME", help="case id for explicit files (default: file name)")
    parser.add_argument("--log-dir", type=Path, metavar="DIR", help="TensorBoard logs to add as training curves")
    parser.add_argument("--sort-by", metavar="METRIC", help="metric that orders the index, worst first")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``qa`` and its ``synthesis`` / ``registration`` sub-subcommands."""
    parser = subparsers.add_parser(
        "qa",
        help="self-contained HTML/PNG QA reports of synthesis outputs or registration fields",
        description="Visual QA: key slices in three world-consistent views, overlays, metrics and geometry "
        "per case, and an index sorted so the worst case comes first.",
    )
    kinds = parser.add_subparsers(dest="qa_kind", metavar="KIND", required=True)

    syn = kinds.add_parser(
        "synthesis",
        help="source / synthesis / target / pred - target",
        description="QA report of synthetic images: source, synthesis, target, signed error map, masked metrics "
        "(medi2i.metrics.synthesis_metrics).",
        epilog=_EPILOG,
    )
    files = syn.add_argument_group("one case from explicit files")
    files.add_argument("--source", type=Path, metavar="NIFTI", help="network input image")
    files.add_argument("--pred", type=Path, metavar="NIFTI", help="synthetic image")
    files.add_argument("--target", type=Path, metavar="NIFTI", help="reference image")
    files.add_argument("--mask", type=Path, metavar="NIFTI", help="evaluation mask (optional)")
    syn.add_argument("--preset", choices=("ct", "mr"), default="ct", help="intensity convention (default: ct)")
    syn.add_argument(
        "--window",
        choices=("brain", "subdural", "soft_tissue", "bone", "full"),
        default="soft_tissue",
        help="CT display window for --preset ct (default: soft_tissue)",
    )
    _add_common(syn, "folder with <subject_id>.nii.gz predictions (default: the manifest's 'pred' column)")
    syn.set_defaults(run=run)

    reg = kinds.add_parser(
        "registration",
        help="fixed / moving / warped, labels, checkerboard, Jacobian folds, grid",
        description="QA report of displacement fields (Learn2Reg layout, voxel units, pull, fixed grid): warped "
        "images and labels, checkerboard, blend, Jacobian determinant with folds, deformation grid, Dice/HD95 "
        "and Jacobian statistics (medi2i.metrics).",
        epilog=_EPILOG,
    )
    files = reg.add_argument_group("one case from explicit files")
    files.add_argument("--fixed", type=Path, metavar="NIFTI", help="fixed image")
    files.add_argument("--moving", type=Path, metavar="NIFTI", help="moving image (same grid)")
    files.add_argument("--ddf", type=Path, metavar="FILE", help="displacement field, .nii.gz or .npz")
    files.add_argument("--fixed-label", type=Path, metavar="NIFTI", help="fixed label map (optional)")
    files.add_argument("--moving-label", type=Path, metavar="NIFTI", help="moving label map (optional)")
    reg.add_argument("--grid-step", type=int, default=6, metavar="N", help="deformation grid spacing in voxels")
    _add_common(reg, "folder with disp_<pair_id>.nii.gz fields (default: the manifest's 'ddf' column)")
    reg.set_defaults(run=run)
    return parser


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_mode(args: argparse.Namespace, required: tuple[str, ...], optional: tuple[str, ...]) -> bool:
    """True for manifest mode, False for explicit files; mixing them or leaving a file out is an input error."""
    explicit = [n for n in (*required, *optional, "case_id") if getattr(args, n) is not None]
    if args.manifest is not None:
        if explicit:
            raise Medi2iInputError("give either --manifest or explicit files, not both", field=_flag(explicit[0]))
        if args.data_root is None:
            raise Medi2iInputError("--manifest needs --data-root", field="--data-root")
        return True
    for name in ("data_root", "pred_dir", "split"):
        if getattr(args, name) is not None:
            raise Medi2iInputError(f"{_flag(name)} only applies with --manifest", field=_flag(name))
    missing = [n for n in required if getattr(args, n) is None]
    if missing:
        raise Medi2iInputError(
            f"missing {_flag(missing[0])}",
            field="arguments",
            expected=", ".join(map(_flag, required)) + " (or --manifest with --data-root)",
        )
    for name in (*required, *optional):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise Medi2iInputError("file not found", path=path, field=_flag(name))
    return False


def _case_id(args: argparse.Namespace, path: Path) -> str:
    if args.case_id is not None:
        return args.case_id
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npz", ".mha", ".nrrd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def run(args: argparse.Namespace) -> int:
    """Run ``medi2i qa synthesis|registration``; returns the exit code."""
    if args.out.exists() and not args.out.is_dir():
        raise Medi2iInputError("output path exists and is not a folder", path=args.out, field="--out")
    if args.log_dir is not None and not args.log_dir.is_dir():
        raise Medi2iInputError("log folder not found", path=args.log_dir, field="--log-dir")
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window from the CLI
    from medi2i.viz import cases as qc
    from medi2i.viz import report

    if args.qa_kind == "synthesis":
        if _check_mode(args, ("source", "pred", "target"), ("mask",)):
            items = qc.synthesis_qa_cases_from_manifest(
                args.manifest, args.data_root, pred_dir=args.pred_dir, split=args.split
            )
        else:
            items = [qc.SynthesisQACase(_case_id(args, args.pred), args.source, args.pred, args.target, args.mask)]
        index = report.qa_synthesis(
            items,
            args.out,
            preset=args.preset,
            sort_by=args.sort_by or "mae",
            log_dir=args.log_dir,
            ct_window_preset=args.window,
        )
        count = len(items)
    else:
        if args.grid_step < 1:
            raise Medi2iInputError("--grid-step must be >= 1", field="--grid-step", found=str(args.grid_step))
        if _check_mode(args, ("fixed", "moving", "ddf"), ("fixed_label", "moving_label")):
            pairs = qc.registration_qa_cases_from_manifest(
                args.manifest, args.data_root, pred_dir=args.pred_dir, split=args.split
            )
        else:
            if (args.fixed_label is None) != (args.moving_label is None):
                raise Medi2iInputError("give both --fixed-label and --moving-label, or neither", field="--fixed-label")
            pairs = [
                qc.RegistrationQACase(
                    _case_id(args, args.ddf), args.fixed, args.moving, args.ddf, args.fixed_label, args.moving_label
                )
            ]
        index = report.qa_registration(
            pairs, args.out, sort_by=args.sort_by, log_dir=args.log_dir, grid_step=args.grid_step
        )
        count = len(pairs)
    print(f"{count} case(s)")
    print(f"wrote {index}")
    return 0
