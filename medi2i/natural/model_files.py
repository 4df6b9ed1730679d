"""Trained-model files of the natural-image methods: what inference needs, nothing more.

A model file is one ``torch.save`` dict, written atomically and read with ``weights_only=True``::

    {"format": "medi2i.natural", "format_version": 1, "method": "cyclegan",
     "config": {...JSON-able kwargs of the method...},
     "modules": {"G_A": state_dict, "G_B": state_dict}}

:func:`load_model` looks the method name up in :data:`METHODS` (``"module:Class"`` strings imported lazily,
so loading a CycleGAN does not import SPADE), rebuilds the method from ``config`` and loads the inference
modules (:meth:`~medi2i.natural.trainer.AdversarialMethod.inference_modules`). Training checkpoints
(optimisers, pools, RNG) are a different file, written by :class:`~medi2i.natural.trainer.AdversarialTrainer`.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.checkpoint import bundle_model_path, resolve_device
from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path

if TYPE_CHECKING:
    from medi2i.natural.trainer import AdversarialMethod
    from medi2i.typing import PathLike

__all__ = ["FORMAT", "FORMAT_VERSION", "METHODS", "load_model", "method_class", "read_model_payload", "save_model"]

FORMAT = "medi2i.natural"
FORMAT_VERSION = 1

METHODS: dict[str, str] = {
    "cyclegan": "medi2i.natural.cyclegan:CycleGAN",
    "cut": "medi2i.natural.cut:CUT",
    "fastcut": "medi2i.natural.cut:FastCUT",
    "sincut": "medi2i.natural.cut:SinCUT",
    "spade": "medi2i.natural.spade:SPADE",
    "sae": "medi2i.natural.sae:SwappingAutoencoder",
    "rabit": "medi2i.natural.rabit:RABIT",
}
"""Method name (``AdversarialMethod.name``) -> ``"module:Class"``."""


def method_class(name: str, *, path: PathLike | None = None) -> type[AdversarialMethod]:
    """The class registered under ``name`` in :data:`METHODS`, imported on demand.

    Example:
        >>> method_class("cyclegan").__name__
        'CycleGAN'
    """
    from medi2i.options import choose_key

    target = choose_key(str(name), METHODS, field="method", path=None if path is None else str(path))
    module_name, _, class_name = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise Medi2iInputError(
            f"method '{name}' is registered but not available in this installation ({err})",
            path=path,
            field="method",
            found=name,
        ) from None


def save_model(path: PathLike, method: AdversarialMethod, data: Mapping[str, Any] | None = None) -> Path:
    """Write ``method``'s name, config and inference-module weights to ``path`` atomically; returns the path.

    Args:
        path: the model file.
        method: the trained method.
        data: optional JSON-able record of the domains' input/output conventions, read by ``medi2i translate``
            (``{"A": {"kind": "photo"|"mr"|"ct"|"label", "channels": int, "size": [H, W]}, "B": {...}}``).
    """
    if not method.name:
        raise ValueError(f"{type(method).__name__} has no registry name (class attribute `name`)")
    record: dict[str, Any] = {}
    if data is not None:
        import json

        try:
            record = json.loads(json.dumps(dict(data)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"data must be a JSON-able mapping, got {data!r} ({err})") from None
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method.name,
        "config": dict(method.config),
        "modules": {
            key: {k: v.detach().cpu() for k, v in module.state_dict().items()}
            for key, module in method.inference_modules().items()
        },
    }
    if record:
        payload["data"] = record
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_model_payload(path: PathLike) -> tuple[Path, Any]:
    """``(file, payload)`` of a model file or a folder holding one (``weights_only`` load, not yet validated).

    Raises:
        Medi2iInputError: a missing or unreadable file.
    """
    file = bundle_model_path(path)
    if not file.is_file():
        raise Medi2iInputError("model file not found", path=file, expected="a model.pt written by medi2i.natural")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise several types
        raise Medi2iInputError(f"cannot read the model file ({type(err).__name__}: {err})", path=file) from None
    return file, payload


def load_model(path: PathLike, device: str | torch.device | None = None) -> AdversarialMethod:
    """Rebuild the method stored in a model file (or a bundle folder's ``models/model.pt``), in eval mode.

    Raises:
        Medi2iInputError: missing/unreadable file, not a medi2i.natural model file, unknown method, a config the
            method rejects, or weights that do not fit (the message names the file and the field).
    """
    file, payload = read_model_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise Medi2iInputError(
            "not a medi2i.natural model file",
            path=file,
            field="format",
            found=payload.get("format") if isinstance(payload, dict) else type(payload).__name__,
            expected=repr(FORMAT),
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise Medi2iInputError(
            "unsupported model file version", path=file, field="format_version", found=version, expected=FORMAT_VERSION
        )
    for key, kind in (("method", str), ("config", Mapping), ("modules", Mapping)):
        if not isinstance(payload.get(key), kind):
            raise Medi2iInputError(
                "malformed model file",
                path=file,
                field=key,
                found=type(payload.get(key)).__name__,
                expected=kind.__name__,
            )
    cls = method_class(payload["method"], path=file)
    try:
        with warnings.catch_warnings():  # config warnings (e.g. a disabled identity loss) were shown at training
            warnings.simplefilter("ignore", UserWarning)
            method = cls.from_config(payload["config"])
    except (TypeError, ValueError) as err:
        raise Medi2iInputError(
            f"the stored config does not build a {payload['method']} ({err})", path=file, field="config"
        ) from None
    modules = method.inference_modules()
    stored: Mapping[str, Any] = payload["modules"]
    if set(stored) != set(modules):
        raise Medi2iInputError(
            "the file's modules do not match the method", path=file, field="modules", found=sorted(stored),
            expected=sorted(modules),
        )  # fmt: skip
    for key, module in modules.items():
        try:
            module.load_state_dict(stored[key])
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise Medi2iInputError(
                f"weights do not fit the configured network ({first})", path=file, field=f"modules.{key}"
            ) from None
    method.to(resolve_device(device))
    method.eval()
    return method
