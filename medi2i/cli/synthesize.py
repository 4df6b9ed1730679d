"""``medi2i synthesize``: translate a whole 3D volume with a trained synthesis bundle.

    medi2i synthesize --bundle bundles/bidpm --input mr.nii.gz --direction a2b --output sct.nii.gz [--mask m.nii.gz]

The model is ``<bundle>/models/model.pt`` (written by the bundle's training) unless ``--checkpoint``
names another translator file. The output has the input's exact geometry (affine and shape), float32;
CT outputs are in HU. Every input is validated before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_DESCRIPTION = """\
Translate a whole 3D volume slice by slice (axial slices, read from the affine) with a trained model.

Directions: a2b translates modality A into modality B of the trained bundle (bidpm default: A = MR,
B = CT, so a2b = MR -> synthetic CT in HU), b2a the reverse. The input is normalised with its modality's
preset (CT: HU window [-1024, 3000]; MR: foreground 0.5-99.5 percentiles), every slice is translated,
the in-plane size is restored and the result is written with the input's affine and shape. With --mask,
voxels outside the mask are set to the target background (-1024 HU for CT, 0 for MR).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synthesize",
        help="translate a whole 3D volume (e.g. MR -> synthetic CT) with a trained bundle",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bundle", type=Path, default=Path("bundles/bidpm"), help="bundle folder (default: %(default)s)"
    )
    parser.add_argument(
        "--input", type=Path, required=True, help="input NIfTI volume (the direction's source modality)"
    )
    parser.add_argument("--output", type=Path, required=True, help="output NIfTI path (.nii or .nii.gz)")
    parser.add_argument(
        "--direction", choices=("a2b", "b2a"), default="a2b", help="translation direction (default: a2b)"
    )
    parser.add_argument("--mask", type=Path, default=None, help="optional foreground mask on the input's grid")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per network call (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="translator file to use instead of <bundle>/models/model.pt"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from medi2i.errors import Medi2iInputError
    from medi2i.synthesis.model_files import load_translator
    from medi2i.synthesis.volume import load_inputs, translate_volume, write

    if args.batch_size < 1:
        raise Medi2iInputError(
            "batch size must be positive", field="--batch-size", found=args.batch_size, expected=">= 1"
        )
    name = args.output.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise Medi2iInputError(
            "output must be a NIfTI file", path=args.output, field="--output", expected=".nii or .nii.gz"
        )
    volume, mask = load_inputs(args.input, args.mask)  # fail on bad input before loading the model
    translator = load_translator(args.checkpoint or args.bundle, device=args.device)
    array, reference = translate_volume(translator, volume, args.direction, mask=mask, batch_size=args.batch_size)
    path = write(args.output, array, reference)
    source, target = translator.source_modality(args.direction), translator.target_modality(args.direction)
    print(f"wrote {path} ({source} -> {target}, shape {reference.array.shape})")
    return 0
