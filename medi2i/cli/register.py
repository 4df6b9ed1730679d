"""``medi2i register``: deformably register a moving image to a fixed image with a trained RL-I2IT agent.

    medi2i register --bundle bundles/rl_i2it --fixed f.nii.gz --moving m.nii.gz --out DIR \\
        [--moving-label ml.nii.gz --fixed-label fl.nii.gz] [--steps 20] [--checkpoint model.pt] [--device cpu]

The agent is ``<bundle>/models/model.pt`` (written by the bundle's training) unless ``--checkpoint`` names
another agent file (:func:`medi2i.registration.model_files.save_agent`). ``DIR`` receives ``ddf.nii.gz``
(Learn2Reg layout ``(X, Y[, Z], n)``, voxel units, pull, on the fixed grid with the fixed affine),
``warped.nii.gz`` (the moving image, original intensities, resampled onto the fixed grid),
``jacobian.nii.gz`` (Jacobian determinant of ``x + u(x)``), with labels ``warped_label.nii.gz`` (nearest,
integer) and ``metrics.json``. Every input is validated before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_DESCRIPTION = """\
Register --moving onto --fixed (same voxel grid, e.g. an affinely pre-aligned pair) with a trained RL-I2IT
agent: images are mapped to [0, 1] with the registration preset (0-99.5 percentiles), padded/cropped to the
model's size, the agent runs --steps mean-plan steps (each clamped to the test clamp, 3 voxels by default)
and the accumulated field is brought back to the fixed grid (exact geometry; where the model size cropped
the image, the field continues with its edge displacement). With --moving-label (and --fixed-label) the
moving labels are warped with nearest-neighbour interpolation, and with both the Dice before/after is
printed. A one-line note goes to stderr when the field folds (some Jacobian determinants <= 0).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "register",
        help="deformably register a moving image to a fixed image with a trained RL-I2IT bundle",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bundle", type=Path, default=Path("bundles/rl_i2it"), help="bundle folder (default: %(default)s)"
    )
    parser.add_argument("--fixed", type=Path, required=True, help="fixed image (NIfTI); defines the output grid")
    parser.add_argument("--moving", type=Path, required=True, help="moving image on the fixed image's grid")
    parser.add_argument("--moving-label", type=Path, default=None, help="optional integer labels of the moving image")
    parser.add_argument(
        "--fixed-label", type=Path, default=None, help="optional integer labels of the fixed image (for Dice)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--steps", type=int, default=None, help="registration steps (default: the model's, 20)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="agent file to use instead of <bundle>/models/model.pt"
    )
    parser.set_defaults(run=run)
    return parser


def _load_inputs(args: argparse.Namespace) -> dict:
    """Load and cross-check every input volume (raises Medi2iInputError before anything is written)."""
    from medi2i.errors import Medi2iInputError
    from medi2i.io import check_same_grid, load_volume

    if args.fixed_label is not None and args.moving_label is None:
        raise Medi2iInputError(
            "--fixed-label needs --moving-label", field="--moving-label", expected="both labels or --moving-label"
        )
    volumes = {"fixed": load_volume(args.fixed, kind="image"), "moving": load_volume(args.moving, kind="image")}
    for name, path in (("moving_label", args.moving_label), ("fixed_label", args.fixed_label)):
        if path is not None:
            volumes[name] = load_volume(path, kind="label")
    for name, volume in volumes.items():
        if name != "fixed":
            check_same_grid(volumes["fixed"], volume, names=("fixed", name))
    return volumes


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    import numpy as np
    import torch

    from medi2i.errors import Medi2iInputError
    from medi2i.io import atomic_path, save_like
    from medi2i.metrics import dice, folding_fraction, jacobian_determinant
    from medi2i.registration.model_files import load_agent
    from medi2i.registration.volumes import register_volumes, warp_label
    from medi2i.spatial import write_ddf

    if args.steps is not None and args.steps < 0:
        raise Medi2iInputError("steps must be >= 0", field="--steps", found=args.steps, expected=">= 0")
    if args.out.exists() and not args.out.is_dir():
        raise Medi2iInputError("output must be a folder", path=args.out, field="--out", found="a file")
    try:
        device = torch.device(args.device) if args.device is not None else None
    except RuntimeError:
        raise Medi2iInputError("unknown torch device", field="--device", found=args.device) from None
    volumes = _load_inputs(args)  # fail on bad input before loading the model
    agent = load_agent(args.checkpoint or args.bundle, device=device)
    fixed = volumes["fixed"]
    result = register_volumes(agent, fixed, volumes["moving"], args.steps)
    ddf_np, warped = result.ddf, result.warped
    jac = jacobian_determinant(ddf_np).astype(np.float32)
    folding = folding_fraction(ddf_np)
    metrics: dict[str, object] = {"steps": result.steps, "folding_fraction": float(folding)}
    warped_label = None
    if "moving_label" in volumes:
        label = volumes["moving_label"].array
        warped_label = warp_label(label, ddf_np)
        if "fixed_label" in volumes:
            ref = volumes["fixed_label"].array
            before = _mean_dice(dice(label, ref))
            after_per_label = dice(warped_label, ref)
            metrics.update(dice_before=before, dice=_mean_dice(after_per_label))
            metrics["dice_per_label"] = {str(k): _finite(v) for k, v in after_per_label.items()}

    args.out.mkdir(parents=True, exist_ok=True)
    write_ddf(args.out / "ddf.nii.gz", ddf_np, fixed.affine)
    save_like(args.out / "warped.nii.gz", warped, fixed, dtype=np.float32)
    save_like(args.out / "jacobian.nii.gz", jac, fixed, dtype=np.float32)
    if warped_label is not None:
        save_like(args.out / "warped_label.nii.gz", warped_label, fixed, dtype=warped_label.dtype)
    with atomic_path(args.out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")

    print(f"wrote {args.out} (ddf, warped, jacobian{', warped_label' if warped_label is not None else ''})")
    if "dice" in metrics:
        print(f"Dice {_fmt(metrics['dice_before'])} -> {_fmt(metrics['dice'])} (mean over labels)")
    print(f"folding {100 * folding:.3f}% of voxels with |J| <= 0")
    if folding > 0:
        print(f"medi2i register: note: the field folds ({100 * folding:.3f}% of voxels |J| <= 0)", file=sys.stderr)
    return 0


def _finite(value: object) -> float | None:
    """JSON-safe float: NaN (a skipped label) becomes ``None``."""
    import math

    value = float(value)  # type: ignore[arg-type]
    return None if math.isnan(value) else value


def _mean_dice(per_label: dict) -> float | None:
    """Mean over the scored labels (NaN = label skipped); ``None`` when none was scored."""
    values = [v for v in map(_finite, per_label.values()) if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.4f}"
