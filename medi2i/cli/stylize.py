"""``medi2i stylize``: per-pair style transfer (Gatys NST or DTP) of an image or a NIfTI slice stack.

    medi2i stylize --content photo.png --style painting.jpg --output out.png [--method nst|dtp]
    medi2i stylize --content site_a_t1.nii.gz --style site_b_t1.nii.gz --output harmonised.nii.gz --method dtp

Images (png/jpg) are stylised at their own size (or at ``--size`` on the long side, resized back). A NIfTI
content is cut into axial slices (axis read from the affine), every slice is stylised with a style slice at
the same relative position of a NIfTI style stack (or with the one style image), and the result is written
with the content's exact geometry (affine and shape). NIfTI intensities go to [-1, 1] with ``--modality`` (MR
percentiles, CT window or min-max) and come back on the style volume's scale when the style is a NIfTI, else
on the content's (``--intensity-scale`` overrides). Constant slices (empty background) are copied unchanged
(``--stylize-empty`` processes them too). Every input is validated, and the VGG weights found, before
anything is computed or written; the output is written atomically at the end.

VGG19 weights are read from a local file only (``--vgg-weights``, or ``vgg19-dcbb9e9d.pth`` in the weights
folder ``$MEDI2I_WEIGHTS``); ``--random-vgg`` uses random weights (smoke tests only: results are not
meaningful style transfer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Stylise a content image with a style image: Gatys neural style transfer (nst, pixel optimisation with a
frozen VGG19) or Deep Translation Prior (dtp, test-time training of a VGG19 encoder copy and a decoder on
the pair). Images: png/jpg. NIfTI: every axial slice is stylised and the result keeps the content's
geometry. The report (losses, SSIM to the content per slice) can be saved with --report.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stylize",
        help="style transfer of an image or NIfTI slice stack (Gatys NST or DTP)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--content", type=Path, required=True, help="content image (png/jpg) or NIfTI")
    parser.add_argument("--style", type=Path, required=True, help="style image (png/jpg) or NIfTI")
    parser.add_argument("--output", type=Path, required=True, help="output path (same family as the content)")
    parser.add_argument("--method", choices=("nst", "dtp"), default="nst", help="method (default: %(default)s)")
    parser.add_argument(
        "--steps", type=int, default=None, help="NST optimiser steps / DTP iterations (default: the method's)"
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    parser.add_argument("--vgg-weights", type=Path, default=None, help="local VGG19 weights file (torchvision/caffe)")
    parser.add_argument("--random-vgg", action="store_true", help="random VGG weights (smoke tests only)")
    parser.add_argument("--vgg-width", type=float, default=1.0, help=argparse.SUPPRESS)  # thin random VGG, tests
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default=None, help="NST optimiser (default lbfgs)")
    parser.add_argument("--content-weight", type=float, default=None, help="content loss weight")
    parser.add_argument("--style-weight", type=float, default=None, help="style loss weight")
    parser.add_argument(
        "--colour", choices=("none", "luminance", "histogram"), default=None, help="NST colour preservation"
    )
    parser.add_argument("--size", type=int, default=None, help="process at this long side, resize the result back")
    parser.add_argument(
        "--modality", choices=("mr", "ct", "minmax"), default="mr", help="NIfTI intensity mapping (default: mr)"
    )
    parser.add_argument(
        "--intensity-scale", choices=("content", "style"), default=None, help="NIfTI output intensity scale"
    )
    parser.add_argument("--stylize-empty", action="store_true", help="also stylise constant NIfTI slices")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the method's)")
    parser.add_argument("--report", type=Path, default=None, help="write the run report as JSON here")
    parser.set_defaults(run=run)
    return parser


def _check_args(args: argparse.Namespace) -> None:
    from medi2i.errors import Medi2iInputError
    from medi2i.natural.data.image_io import image_format

    for name in ("content", "style"):
        path = getattr(args, name)
        image_format(path)  # suffix check
        if not path.is_file():
            raise Medi2iInputError("file not found", path=path, field=f"--{name}", expected="an existing image file")
    content_kind, output_kind = image_format(args.content), image_format(args.output)
    if content_kind != output_kind:
        raise Medi2iInputError(
            "output must be the same kind of file as the content",
            path=args.output,
            field="--output",
            found=output_kind,
            expected=content_kind,
        )
    if args.output.is_dir():
        raise Medi2iInputError("output path is a folder", path=args.output, field="--output", expected="a file path")
    if args.steps is not None and args.steps < 1:
        raise Medi2iInputError("steps must be positive", field="--steps", found=args.steps, expected=">= 1")
    if args.size is not None and args.size < 16:
        raise Medi2iInputError("size too small for VGG19", field="--size", found=args.size, expected=">= 16")
    if not 0.0 < args.vgg_width <= 1.0 or (args.vgg_width < 1.0 and not args.random_vgg):
        raise Medi2iInputError(
            "--vgg-width < 1 needs --random-vgg", field="--vgg-width", found=args.vgg_width, expected="(0, 1]"
        )
    if args.random_vgg and args.vgg_weights is not None:
        raise Medi2iInputError("give either --vgg-weights or --random-vgg", field="--random-vgg")
    if args.method == "dtp" and (args.optimizer or args.colour):
        raise Medi2iInputError("--optimizer and --colour are NST options", field="--method", found="dtp")
    for name in ("content_weight", "style_weight"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise Medi2iInputError("loss weights must be >= 0", field="--" + name.replace("_", "-"), found=value)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"device": args.device}
    if args.random_vgg:
        options.update(pretrained=False, vgg_width=args.vgg_width)
    else:
        options["weights_path"] = args.vgg_weights
    for name in ("steps", "optimizer", "content_weight", "style_weight", "colour", "seed"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return options


def _too_small(image: Any, path: Path, field: str) -> None:
    from medi2i.errors import Medi2iInputError

    if min(image.shape[-2:]) < 16:
        raise Medi2iInputError(
            "image too small for VGG19 (4 poolings)",
            path=path,
            field=field,
            found=tuple(image.shape[-2:]),
            expected=">= 16 x 16",
        )


def _resize(image: Any, size: tuple[int, int]) -> Any:
    import torch.nn.functional as F

    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _work_size(shape: tuple[int, int], size: int | None) -> tuple[int, int]:
    if size is None:
        return shape
    scale = size / max(shape)
    return max(16, round(shape[0] * scale)), max(16, round(shape[1] * scale))


def run(args: argparse.Namespace) -> int:
    from medi2i.natural.data.image_io import read_image, write_image
    from medi2i.natural.stylize import make_stylizer

    _check_args(args)
    content, content_meta = read_image(args.content, modality=args.modality)
    style, style_meta = read_image(args.style, modality=args.modality)
    nifti = content_meta["format"] == "nifti"
    contents = list(content) if content.ndim == 4 else [content]  # (S, 1, H, W) stack or one (C, H, W)
    styles = list(style) if style.ndim == 4 else [style]
    for image in contents:
        _too_small(image, args.content, "--content")
    for image in styles:
        _too_small(image, args.style, "--style")
    stylizer = make_stylizer(args.method, **_options(args))  # finds the weights file before any work

    outputs, reports = [], []
    for i, image in enumerate(contents):
        j = 0 if len(styles) == 1 else round(i * (len(styles) - 1) / max(1, len(contents) - 1))
        if nifti and not args.stylize_empty and float(image.max() - image.min()) < 1e-6:
            outputs.append(image.clone())
            reports.append({"slice": i, "skipped": "constant slice"})
            continue
        shape = tuple(image.shape[-2:])
        work = _work_size(shape, args.size)
        styled, report = stylizer(
            _resize(image, work), _resize(styles[j], _work_size(tuple(styles[j].shape[-2:]), args.size))
        )
        outputs.append(_resize(styled, shape).clamp(-1.0, 1.0))
        report.pop("history", None)
        reports.append({"slice": i, "style_slice": j, **report})
    import torch

    result = torch.stack(outputs) if content.ndim == 4 else outputs[0]
    intensity = None
    if nifti:
        scale = args.intensity_scale or ("style" if style_meta["format"] == "nifti" else "content")
        intensity = style_meta.get("intensity") if scale == "style" else None
    path = write_image(args.output, result, content_meta, intensity=intensity)
    done = [r for r in reports if "skipped" not in r]
    ssims = [r["ssim_to_content"] for r in done if r.get("ssim_to_content") == r.get("ssim_to_content")]
    summary = {
        "method": args.method,
        "content": str(args.content),
        "style": str(args.style),
        "output": str(path),
        "images": len(contents),
        "stylised": len(done),
        "mean_ssim_to_content": sum(ssims) / len(ssims) if ssims else None,
        "seconds": sum(r["seconds"] for r in done),
        "per_image": reports,
    }
    if args.report is not None:
        from medi2i.io import atomic_path

        args.report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.report) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2, default=str))
    ssim_text = "n/a" if summary["mean_ssim_to_content"] is None else f"{summary['mean_ssim_to_content']:.3f}"
    print(
        f"wrote {path} ({args.method}, {len(done)}/{len(contents)} image(s) stylised, "
        f"mean SSIM to content {ssim_text}, {summary['seconds']:.1f} s)"
    )
    return 0
