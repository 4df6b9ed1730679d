"""Local pretrained-weight files: where they live, how they are found, how they are read. Nothing downloads.

Pretrained feature networks (VGG16/19 for LPIPS and the style methods, Inception for FID) load from
a local file (docs/conventions.md, "Weights"). The lookup order is:

1. an explicit path from the config or constructor argument (a file, or a folder holding the file);
2. the weights folder: ``$MEDI2I_WEIGHTS`` if set, else ``~/.cache/medi2i/weights``.

A missing file is a :class:`~medi2i.errors.Medi2iInputError` that names the file, the folder it was
looked for in, the environment variable, and where to fetch the file on a connected machine. medi2i
never fetches it itself: training clusters and CI are often offline, and a silent download would hide
which weights a result was computed with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from medi2i.errors import Medi2iInputError
from medi2i.typing import PathLike

__all__ = ["KNOWN_WEIGHTS", "WEIGHTS_ENV", "load_state_dict_file", "resolve_weights", "weights_dir"]

WEIGHTS_ENV = "MEDI2I_WEIGHTS"
_DEFAULT_DIR = "~/.cache/medi2i/weights"

# Where each file the project knows about comes from, for the "how to get it" part of the error.
KNOWN_WEIGHTS: dict[str, str] = {
    "vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth (torchvision VGG16 IMAGENET1K_V1)",
    "vgg19-dcbb9e9d.pth": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth (torchvision VGG19 IMAGENET1K_V1)",
    "lpips_vgg_v0.1.pth": (
        "the file lpips/weights/v0.1/vgg.pth inside the 'lpips' wheel (pip download lpips, unzip the wheel), "
        "renamed to lpips_vgg_v0.1.pth"
    ),
    "pt_inception-2015-12-05-6726825d.pth": (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
    ),
}


def weights_dir() -> Path:
    """The folder pretrained weights are looked up in: ``$MEDI2I_WEIGHTS`` or ``~/.cache/medi2i/weights``.

    The folder is not created; it only has to exist once files are put there.

    Example:
        >>> import os
        >>> saved = os.environ.pop("MEDI2I_WEIGHTS", None)
        >>> weights_dir().parts[-3:]
        ('.cache', 'medi2i', 'weights')
        >>> os.environ["MEDI2I_WEIGHTS"] = "/data/weights"
        >>> str(weights_dir())
        '/data/weights'
        >>> _ = os.environ.pop("MEDI2I_WEIGHTS") if saved is None else os.environ.update(MEDI2I_WEIGHTS=saved)
    """
    configured = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(configured or _DEFAULT_DIR).expanduser()


def _how_to_get(filename: str) -> str:
    source = KNOWN_WEIGHTS.get(filename)
    if source is None:
        return f"obtain '{filename}' from the provider of these weights"
    return f"on a machine with internet access, download {source}"


def resolve_weights(filename: str, *, path: PathLike | None = None, purpose: str) -> Path:
    """Find a local weights file; never download.

    Args:
        filename: the file's canonical name, e.g. ``"vgg16-397923af.pth"``.
        path: explicit location from the config: the file itself, or a folder that holds ``filename``.
            When given it wins and the weights folder is not consulted.
        purpose: what needs the file, for the error message (e.g. ``"LPIPS VGG16 backbone"``).

    Returns:
        The path of an existing file.

    Raises:
        Medi2iInputError: the file does not exist; the message names the file, the folder searched, the
            ``MEDI2I_WEIGHTS`` variable and where to get the file.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "w.pth").write_bytes(b"")
        >>> resolve_weights("w.pth", path=d, purpose="a test") == d / "w.pth"
        True
    """
    if not purpose:
        raise ValueError("purpose must name what needs the weights file, got an empty string")
    if path is not None:
        explicit = Path(path).expanduser()
        candidate = explicit / filename if explicit.is_dir() else explicit
        if candidate.is_file():
            return candidate
        raise Medi2iInputError(
            f"{purpose} needs a weights file, and the configured path does not exist. Point the config at the file, "
            f"or remove the path to use {WEIGHTS_ENV} ({weights_dir()}/{filename}); "
            f"{_how_to_get(filename)} and copy it there. medi2i never downloads weights",
            path=candidate,
            field="weights_path",
            found="no such file",
        )
    folder = weights_dir()
    candidate = folder / filename
    if candidate.is_file():
        return candidate
    env_state = (
        f"{WEIGHTS_ENV} is set to {os.environ[WEIGHTS_ENV]!r}"
        if os.environ.get(WEIGHTS_ENV)
        else (f"{WEIGHTS_ENV} is not set, so the default folder is used")
    )
    raise Medi2iInputError(
        f"{purpose} needs the weights file '{filename}', which is not in the weights folder {folder} "
        f"({env_state}). Put the file there (or set {WEIGHTS_ENV} to the folder that holds it, or give its path "
        f"in the config); {_how_to_get(filename)} and copy it here. medi2i never downloads weights",
        path=candidate,
        found="no such file",
    )


def load_state_dict_file(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` file safely (``weights_only=True``, onto the CPU).

    Args:
        path: the file (from :func:`resolve_weights`).

    Returns:
        A plain ``dict`` mapping parameter names to CPU tensors.

    Raises:
        Medi2iInputError: missing, truncated or corrupt file, a pickle that needs arbitrary code
            (``weights_only`` refuses it), or content that is not a flat mapping of names to tensors.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.pth"
        >>> torch.save({"conv.weight": torch.ones(2, 1, 1, 1)}, f)
        >>> load_state_dict_file(f)["conv.weight"].shape
        torch.Size([2, 1, 1, 1])
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise Medi2iInputError("weights file not found", path=src, found="no such file")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and unpickling-policy errors all mean "not a usable weights file"
        raise Medi2iInputError(
            f"cannot read the weights file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "it may be truncated or corrupt, or not a torch state dict: copy it again",
            path=src,
        ) from exc
    if not isinstance(obj, Mapping):
        raise Medi2iInputError(
            "weights file does not hold a state dict",
            path=src,
            found=type(obj).__name__,
            expected="a mapping of parameter names to tensors",
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise Medi2iInputError(
                "weights file holds an entry that is not a named tensor",
                path=src,
                field=str(key),
                found=type(value).__name__,
                expected="torch.Tensor",
            )
        state[key] = value
    return state
