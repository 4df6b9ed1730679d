"""``medi2i translate``: apply a trained natural-image model (CycleGAN, CUT, SPADE, ...) to one image or volume.

    medi2i translate --bundle bundles/natural/runs/cyclegan --input photo.png --output out.png
    medi2i translate --model cyclegan_t1_t2.pt --input t1.nii.gz --output t2_synth.nii.gz [--direction BtoA]

The model file is written by the natural trainer (:func:`medi2i.natural.model_files.save_model`); ``--bundle``
means ``<bundle>/models/model.pt``. Images (png/jpg) are translated at their own size (the methods pad to the
multiple their generator needs); NIfTI volumes slice by slice along the axial axis read from the affine, and
the output is written on the input's exact grid (affine and shape). Everything is validated before anything
is written.

Model-file ``"data"`` record (optional, plain JSON, top level of the model file beside ``config``) -- how to
prepare inputs and restore outputs per domain::

    "data": {"A": {"kind": "photo" | "mr" | "ct" | "label", "channels": 3, "size": [256, 256],
                   "output_range": [0, 1000]},
             "B": {...}}

``kind`` selects the input normalisation (photo: pixels / 127.5 - 1; mr: foreground 0.5-99.5 percentiles;
ct: HU window [-1024, 3000]; label: integer class ids, no scaling) and the output mapping (ct target: HU via
the inverse window; mr target from an mr source: the input's own percentile window; mr target from anything
else: ``output_range``, default [0, 1000], the demo cohort's scale). ``size`` ([H, W], optional) is the input
size of a fixed-size generator (SPADE, RABIT): inputs are resized to it (nearest for labels) and outputs back
to the input's in-plane size. ``channels`` defaults to the method's
``in_channels``/``out_channels``; grey inputs are repeated to 3 channels, and 3-channel outputs are averaged
for NIfTI. Without a record, inputs are photos (png/jpg) or MR (NIfTI) and outputs use the input's scale;
``--input-kind``/``--output-kind`` override it.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Translate one image (png/jpg) or NIfTI slice/volume with a trained natural-image model.

AtoB uses the model's A -> B generator, BtoA the reverse (CycleGAN). NIfTI volumes are translated slice by
slice along the axial axis (read from the affine) and written with the input's exact geometry.
"""

KINDS = ("photo", "mr", "ct", "label")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "translate",
        help="translate an image or NIfTI volume with a trained natural-image model (CycleGAN, CUT, SPADE, ...)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="bundle folder (models/model.pt) or a folder holding model.pt")
    source.add_argument("--model", type=Path, help="model file written by the natural trainer")
    parser.add_argument("--input", type=Path, required=True, help="input png/jpg or NIfTI (.nii/.nii.gz)")
    parser.add_argument("--output", type=Path, required=True, help="output path (same family as the input)")
    parser.add_argument("--direction", default="AtoB", help="AtoB (default) or BtoA for two-way models")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per network call (default: %(default)s)")
    parser.add_argument("--input-kind", choices=KINDS, default=None, help="override the model file's input kind")
    parser.add_argument("--output-kind", choices=KINDS, default=None, help="override the model file's output kind")
    parser.add_argument("--exemplar", type=Path, default=None, help="exemplar image (exemplar-based methods, RABIT)")
    parser.add_argument("--exemplar-label", type=Path, default=None, help="label map of the exemplar (RABIT)")
    parser.set_defaults(run=run)
    return parser


def read_data_record(model_path: Path) -> dict[str, Any]:
    """The ``"data"`` record of a natural model file (``{}`` when absent); validates that the file is readable."""
    from medi2i.errors import Medi2iInputError
    from medi2i.natural.model_files import read_model_payload

    file, payload = read_model_payload(model_path)
    record = payload.get("data", {}) if isinstance(payload, dict) else {}
    if not isinstance(record, Mapping):
        raise Medi2iInputError("malformed data record", path=file, field="data", found=type(record).__name__)
    for side, entry in record.items():
        if side in ("A", "B") and (not isinstance(entry, Mapping) or entry.get("kind", "photo") not in KINDS):
            raise Medi2iInputError(
                "malformed data record", path=file, field=f"data.{side}", found=entry, expected=KINDS
            )
    return dict(record)


def _channels(x: Any, channels: int | None) -> Any:
    if channels is None or x.shape[-3] == channels:
        return x
    if x.shape[-3] == 1 and channels == 3:
        return x.repeat_interleave(3, dim=-3)
    if x.shape[-3] == 3 and channels == 1:
        return x.mean(dim=-3, keepdim=True)
    from medi2i.errors import Medi2iInputError

    raise Medi2iInputError(
        "input channels do not fit the model", field="channels", found=x.shape[-3], expected=channels
    )


def resize_batch(batch: Any, size: tuple[int, int], *, label: bool) -> Any:
    """Resize ``(B, C, H, W)``: nearest for label maps, antialiased bicubic (clamped to [-1, 1]) for images."""
    import torch

    from medi2i.natural.data.transforms import resize_image

    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    return torch.stack([resize_image(item, size, label) for item in batch])


def _call(method: Any, inputs: Any, direction: str) -> Any:
    from medi2i.errors import Medi2iInputError

    params = inspect.signature(method.translate).parameters
    if "direction" in params:
        return method.translate(inputs, direction=direction)
    if direction != "AtoB":
        raise Medi2iInputError(
            f"{type(method).__name__} translates one way only", field="--direction", found=direction, expected="AtoB"
        )
    if getattr(method, "name", "") == "sae" and isinstance(inputs, Mapping):
        # Swapping Autoencoder: the input's structure with the exemplar's texture
        return method.translate(inputs["image"], style=inputs["exemplar"])
    return method.translate(inputs)


def translate_file(
    method: Any,
    input_path: Path,
    output_path: Path,
    *,
    direction: str = "AtoB",
    data: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    input_kind: str | None = None,
    output_kind: str | None = None,
    exemplar: Path | None = None,
    exemplar_label: Path | None = None,
) -> Path:
    """Read ``input_path``, translate it with ``method`` (a loaded natural method), write ``output_path``."""
    import torch

    from medi2i.data.intensity import CTWindow, LinearIntensityMap
    from medi2i.errors import Medi2iInputError
    from medi2i.natural.data.image_io import image_format, read_image, write_image

    if direction not in ("AtoB", "BtoA"):
        raise Medi2iInputError("unknown direction", field="--direction", found=direction, expected="AtoB or BtoA")
    if int(batch_size) < 1:
        raise Medi2iInputError("batch size must be positive", field="--batch-size", found=batch_size, expected=">= 1")
    fmt_in, fmt_out = image_format(input_path), image_format(output_path)
    if fmt_in != fmt_out:
        raise Medi2iInputError(
            "output format must match the input (NIfTI geometry cannot be kept in a png, nor invented for one)",
            path=output_path,
            field="--output",
            found=fmt_out,
            expected=fmt_in,
        )
    record = dict(data or {})
    src, dst = ("A", "B") if direction == "AtoB" else ("B", "A")
    src_rec, dst_rec = dict(record.get(src, {})), dict(record.get(dst, {}))
    kind = input_kind or src_rec.get("kind") or ("photo" if fmt_in == "photo" else "mr")
    out_kind = output_kind or dst_rec.get("kind") or kind
    config = dict(getattr(method, "config", {}) or {})
    in_channels = src_rec.get("channels") or config.get("in_channels" if src == "A" else "out_channels")
    is_label = kind == "label"
    if fmt_in == "nifti":
        modality = kind if kind in ("mr", "ct") else "minmax"
        x, meta = read_image(input_path, label=is_label, modality=modality)
    else:
        x, meta = read_image(input_path, label=is_label, channels=None if is_label else in_channels)
    if not is_label:
        x = _channels(x, in_channels)
    extra: dict[str, Any] = {}
    if exemplar is not None:
        ex, _ = read_image(exemplar, channels=None)
        extra["exemplar"] = _channels(ex, config.get("out_channels")).reshape(1, *ex.shape[-3:])
        if exemplar_label is not None:
            extra["exemplar_label"] = read_image(exemplar_label, label=True)[0].reshape(1, 1, *ex.shape[-2:])

    batch = x if x.ndim == 4 else x[None]
    in_plane = tuple(batch.shape[-2:])
    size = src_rec.get("size")
    if size is not None:  # fixed-size generators (SPADE, RABIT): resize in, and the output back
        batch = resize_batch(batch, (int(size[0]), int(size[1])), label=is_label)
        extra = {k: resize_batch(v, (int(size[0]), int(size[1])), label=k.endswith("label")) for k, v in extra.items()}
    device = (
        next((p.device for p in method.parameters()), torch.device("cpu")) if hasattr(method, "parameters") else None
    )
    outputs = []
    for start in range(0, batch.shape[0], int(batch_size)):
        chunk = batch[start : start + int(batch_size)].to(device)
        if extra:
            inputs = {"label" if is_label else "image": chunk}
            inputs.update({k: v.to(device).expand(chunk.shape[0], *v.shape[1:]) for k, v in extra.items()})
        else:
            inputs = chunk
        outputs.append(_call(method, inputs, direction).detach().float().cpu())
    out = resize_batch(torch.cat(outputs).clamp(-1.0, 1.0), in_plane, label=False)
    out = out if x.ndim == 4 else out[0]

    intensity = None
    if fmt_in == "nifti":
        if out_kind == "ct":
            intensity = CTWindow().mapping
        elif not (out_kind == "mr" and kind == "mr"):
            lo, hi = dst_rec.get("output_range", (0.0, 1000.0))
            intensity = LinearIntensityMap(float(lo), float(hi), -1.0, 1.0)
    meta = dict(meta)
    return write_image(output_path, out, meta, intensity=intensity)


def run(args: argparse.Namespace) -> int:
    from medi2i.errors import Medi2iInputError
    from medi2i.natural.data.image_io import image_format
    from medi2i.natural.model_files import load_model

    if args.batch_size < 1:
        raise Medi2iInputError("batch size must be positive", field="--batch-size", found=args.batch_size)
    if args.direction not in ("AtoB", "BtoA"):
        raise Medi2iInputError("unknown direction", field="--direction", found=args.direction, expected="AtoB or BtoA")
    if image_format(args.input) != image_format(args.output):
        raise Medi2iInputError(
            "output format must match the input", path=args.output, field="--output", expected=image_format(args.input)
        )
    if not args.input.is_file():
        raise Medi2iInputError("input file not found", path=args.input, field="--input")
    model_path = args.model if args.model is not None else args.bundle
    data = read_data_record(model_path)  # fails on a missing/unreadable model before any work
    method = load_model(model_path, device=args.device)
    path = translate_file(
        method,
        args.input,
        args.output,
        direction=args.direction,
        data=data,
        batch_size=args.batch_size,
        input_kind=args.input_kind,
        output_kind=args.output_kind,
        exemplar=args.exemplar,
        exemplar_label=args.exemplar_label,
    )
    print(f"wrote {path} ({getattr(method, 'name', type(method).__name__)}, {args.direction})")
    return 0
