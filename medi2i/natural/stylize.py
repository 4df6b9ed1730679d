"""One entry point for the two per-pair style-transfer methods: Gatys NST and DTP.

``stylize(content, style, method="nst" | "dtp", **options) -> (image, report)``. Images are ``(C, H, W)`` or
``(1, C, H, W)`` float tensors in ``[-1, 1]`` with C = 1 (medical slices) or 3; the output has the content's
shape. ``options`` are the keyword arguments of :class:`~medi2i.natural.nst.NeuralStyleTransfer` or
:class:`~medi2i.natural.dtp.DeepTranslationPrior`, plus two aliases understood by both: ``steps`` (NST
optimiser steps / DTP iterations) and ``vgg_weights`` (the local VGG19 weights file, ``weights_path``).
Both reports carry ``method``, ``seconds`` and ``ssim_to_content`` (anatomy-drift check).

For many pairs with one configuration (e.g. the slices of a volume), build the stylizer once with
:func:`make_stylizer` and call it per pair: the VGG is then loaded once, and DTP still trains fresh copies
per pair.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from monai.utils import StrEnum, look_up_option

__all__ = ["StyleMethod", "make_stylizer", "stylize"]


class StyleMethod(StrEnum):
    """Per-pair style-transfer methods."""

    NST = "nst"
    DTP = "dtp"


def _method_class(method: StyleMethod) -> type:
    if method == StyleMethod.NST:
        from medi2i.natural.nst import NeuralStyleTransfer

        return NeuralStyleTransfer
    from medi2i.natural.dtp import DeepTranslationPrior

    return DeepTranslationPrior


def make_stylizer(method: str = StyleMethod.NST, **options: Any) -> Any:
    """Build the method's stylizer (a callable ``(content, style) -> (image, report)``) from ``options``.

    Raises:
        ValueError: an unknown method or option (the message lists the allowed option names).
    """
    method = StyleMethod(look_up_option(method, StyleMethod))
    cls = _method_class(method)
    options = dict(options)
    if "vgg_weights" in options:
        options["weights_path"] = options.pop("vgg_weights")
    if "steps" in options and options["steps"] is None:  # None keeps the method's own schedule
        options.pop("steps")
    if "steps" in options and method == StyleMethod.DTP:
        options["iterations"] = options.pop("steps")
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method.value!r}; allowed: {allowed}")
    return cls(**options)


def stylize(
    content: torch.Tensor, style: torch.Tensor | list[torch.Tensor], method: str = StyleMethod.NST, **options: Any
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Stylise one content image with a style image (NST also takes a list: collection-averaged Grams).

    Example (NST with a thin random VGG, for illustration only):
        >>> out, report = stylize(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32), "nst", steps=1,
        ...                       optimizer="adam", pretrained=False, vgg_width=0.125, device="cpu")
        >>> tuple(out.shape), report["method"]
        ((1, 32, 32), 'nst')
    """
    return make_stylizer(method, **options)(content, style)
