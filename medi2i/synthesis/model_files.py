"""Trained translator files: everything needed to translate images later, in one checkpoint.

A translator file (``bundles/bidpm/models/model.pt`` by default) is a :func:`medi2i.checkpoint.save_checkpoint`
payload with

- ``network``: the velocity network's weights (the EMA weights when training used EMA, as the paper samples);
- ``translator``: plain JSON settings: the method's constructor ``config()`` and the dotted path of the
  ``builder`` that rebuilds the method from it (default ``medi2i.synthesis.build_method``), the model's
  in-plane ``model_size`` and ``fit_mode``, the modality of each side (``{"a": "mr", "b": "ct"}``), display
  names, and the MR output range used when translating into MR from CT.

It loads with ``torch.load(weights_only=True)``: no pickled code runs when a file is opened.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.checkpoint import BestModelSaver, load_checkpoint, read_model_file, resolve_device, save_checkpoint
from medi2i.errors import Medi2iInputError
from medi2i.synthesis.ema import unwrap

if TYPE_CHECKING:
    from medi2i.typing import PathLike

DEFAULT_BUILDER = "medi2i.synthesis.build_method"
DIRECTIONS = ("a2b", "b2a")
MODALITIES = ("mr", "ct")


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    if not module:
        raise Medi2iInputError("builder must be a dotted path", field="builder", found=dotted, expected="pkg.mod.func")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise Medi2iInputError(f"cannot import the method builder ({err})", field="builder", found=dotted) from None


def translator_settings(
    method: Any,
    *,
    model_size: Sequence[int],
    fit_mode: str = "pad_crop",
    modalities: Mapping[str, str] | Sequence[str] = ("mr", "ct"),
    names: Sequence[str] | None = None,
    mr_output_range: Sequence[float] = (0.0, 1000.0),
    builder: str = DEFAULT_BUILDER,
) -> dict[str, Any]:
    """The plain-JSON ``translator`` record for ``method`` (validated)."""
    mods = dict(modalities) if isinstance(modalities, Mapping) else dict(zip(("a", "b"), modalities, strict=True))
    for side in ("a", "b"):
        if mods.get(side) not in MODALITIES:
            raise ValueError(f"modalities[{side!r}] must be one of {MODALITIES}, got {mods.get(side)!r}")
    size = [int(s) for s in model_size]
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"model_size must be two positive ints (H, W), got {model_size!r}")
    lo, hi = (float(v) for v in mr_output_range)
    if not hi > lo:
        raise ValueError(f"mr_output_range must be increasing, got {mr_output_range!r}")
    settings = {
        "builder": builder,
        "method_config": method.config(),
        "model_size": size,
        "fit_mode": fit_mode,
        "modalities": {"a": mods["a"], "b": mods["b"]},
        "names": list(names) if names else [mods["a"], mods["b"]],
        "mr_output_range": [lo, hi],
    }
    json.dumps(settings)  # must stay plain JSON so weights_only loading works
    return settings


def save_translator(path: PathLike, network: torch.nn.Module, settings: Mapping[str, Any]) -> Path:
    """Atomically write a translator file from a network (e.g. ``ema.module``) and :func:`translator_settings`."""
    return save_checkpoint(path, {"network": unwrap(network)}, extra={"translator": dict(settings)})


class Translator:
    """A trained method ready to translate model-sized slices in either direction.

    Args:
        method: the rebuilt method carrying the trained (EMA) weights, in eval mode.
        settings: the file's ``translator`` record.
        device: where the network runs.

    Attributes:
        model_size: ``(H, W)`` the network expects; ``fit_mode``: how slices were fitted to it.
    """

    def __init__(self, method: Any, settings: Mapping[str, Any], device: torch.device | str = "cpu"):
        self.method = method
        self.settings = dict(settings)
        self.device = torch.device(device)
        self.model_size = tuple(int(s) for s in settings["model_size"])
        self.fit_mode = str(settings.get("fit_mode", "pad_crop"))
        self.modalities = dict(settings["modalities"])
        self.mr_output_range = tuple(float(v) for v in settings.get("mr_output_range", (0.0, 1000.0)))

    def source_modality(self, direction: str) -> str:
        """``"mr"`` or ``"ct"``: the modality of the input for ``direction``."""
        return self.modalities["a" if check_direction(direction) == "a2b" else "b"]

    def target_modality(self, direction: str) -> str:
        """``"mr"`` or ``"ct"``: the modality of the output for ``direction``."""
        return self.modalities["b" if check_direction(direction) == "a2b" else "a"]

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """Translate normalised slices ``(B, 1, H, W)`` in [-1, 1] at ``model_size``.

        Returns:
            ``(B, 1, H, W)`` in [-1, 1] (up to the method's output range), on ``x``'s device.
        """
        direction = check_direction(direction)
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.model_size:
            raise Medi2iInputError(
                "slices do not match the model",
                field="shape",
                found=tuple(x.shape),
                expected=f"(B, 1, {self.model_size[0]}, {self.model_size[1]})",
            )
        out = self.method.sample(x.to(self.device, torch.float32), direction)
        return out.to(x.device)


def check_direction(direction: str) -> str:
    """Validate ``"a2b"`` / ``"b2a"``."""
    if direction not in DIRECTIONS:
        raise Medi2iInputError("unknown translation direction", field="direction", found=direction, expected=DIRECTIONS)
    return direction


def load_translator(bundle_or_checkpoint: PathLike, device: torch.device | str | None = None) -> Translator:
    """Rebuild the method from a translator file (or a bundle's ``models/model.pt``) with its trained weights.

    Args:
        bundle_or_checkpoint: bundle folder or translator file.
        device: ``None`` picks CUDA when available, else CPU.

    Raises:
        Medi2iInputError: missing file (with a hint to train first), a file that is not a translator.
    """
    path, payload = read_model_file(
        bundle_or_checkpoint,
        required=("network", "translator"),
        kind="translator",
        train_command="python -m monai.bundle run --config_file "
        "\"['bundles/bidpm/train.json','bundles/bidpm/demo_cpu.json']\"",
    )
    settings = payload["translator"]
    if not isinstance(settings, dict):
        raise Medi2iInputError("translator settings are not a record", path=path, field="translator")
    config = dict(settings["method_config"])
    if "lpips_pretrained" in config:
        # the paired metric only enters the training loss; sampling must not need the LPIPS weight files
        config["lpips_pretrained"] = False
    method = _import(settings.get("builder", DEFAULT_BUILDER))(config)
    load_checkpoint(path, {"network": unwrap(method.network)})
    dev = resolve_device(device)
    if hasattr(method, "to"):
        method = method.to(dev)
    if hasattr(method, "eval"):
        method.eval()
    return Translator(method, settings, dev)


class TranslatorSaver(BestModelSaver):
    """Ignite handler writing the translator file from the EMA weights.

    Without a ``score_function`` the file is written when training completes. With one, it is written at
    every ``event`` (e.g. after each validation) whose score improves on the best so far, and at completion
    only if no score was ever recorded.

    Args:
        path: translator file (e.g. ``bundles/bidpm/models/model.pt``).
        network: the module whose weights are saved (``ema.module``).
        settings: :func:`translator_settings` record.
        score_function: ``engine -> float`` (e.g. :func:`medi2i.synthesis.validation.metric_score`).
        mode: ``"max"`` or ``"min"``.
        event: ignite event for the score check (default ``ITERATION_COMPLETED``).
    """

    def __init__(
        self,
        path: PathLike,
        network: torch.nn.Module,
        settings: Mapping[str, Any],
        score_function: Any = None,
        mode: str = "max",
        event: Any = None,
    ):
        super().__init__(path, score_function, mode, event)
        self.network = network
        self.settings = dict(settings)

    def save(self) -> Path:
        return save_translator(self.path, self.network, self.settings)
