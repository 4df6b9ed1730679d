"""Natural-image translation methods on one shared transform pipeline, for photos and medical slices alike.

=====================  ===================================================  =====================================
method                 class                                                data
=====================  ===================================================  =====================================
CycleGAN               :class:`~medi2i.natural.cyclegan.CycleGAN`            unpaired A, B
CUT / FastCUT / SinCUT :class:`~medi2i.natural.cut.CUT`, ``FastCUT``,        unpaired A, B (SinCUT: one image each)
                       ``SinCUT``
SPADE                  :class:`~medi2i.natural.spade.SPADE`                  label map -> image
Swapping Autoencoder   :class:`~medi2i.natural.sae.SwappingAutoencoder`      one unlabeled collection
RABIT                  :class:`~medi2i.natural.rabit.RABIT`                  label map + exemplar -> image
DTP                    :class:`~medi2i.natural.dtp.DeepTranslationPrior`     one content/style pair (test-time)
NST (Gatys)            :class:`~medi2i.natural.nst.NeuralStyleTransfer`      one content/style pair (pixels)
=====================  ===================================================  =====================================

The adversarial methods subclass :class:`~medi2i.natural.trainer.AdversarialMethod` and train with
:class:`~medi2i.natural.trainer.AdversarialTrainer` (exact resume); trained models are saved and loaded with
:mod:`medi2i.natural.model_files` and applied by ``medi2i translate``; DTP and NST run through
:func:`~medi2i.natural.stylize.stylize` and ``medi2i stylize``. Data: :mod:`medi2i.natural.data`.

Research digests: ``park_thesis.md`` (CycleGAN, CUT, SPADE, SAE) and ``dtp_rabit_nst.md`` (DTP, RABIT, NST).
Exports are resolved on first use, so ``import medi2i.natural`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CycleGAN": "medi2i.natural.cyclegan",
    "CUT": "medi2i.natural.cut",
    "FastCUT": "medi2i.natural.cut",
    "SinCUT": "medi2i.natural.cut",
    "SPADE": "medi2i.natural.spade",
    "SwappingAutoencoder": "medi2i.natural.sae",
    "RABIT": "medi2i.natural.rabit",
    "DeepTranslationPrior": "medi2i.natural.dtp",
    "DTPDecoder": "medi2i.natural.dtp_networks",
    "NeuralStyleTransfer": "medi2i.natural.nst",
    "gram_matrix": "medi2i.natural.nst",
    "stylize": "medi2i.natural.stylize",
    "make_stylizer": "medi2i.natural.stylize",
    "StyleMethod": "medi2i.natural.stylize",
    "AdversarialMethod": "medi2i.natural.trainer",
    "AdversarialTrainer": "medi2i.natural.trainer",
    "StepOutput": "medi2i.natural.trainer",
    "save_model": "medi2i.natural.model_files",
    "load_model": "medi2i.natural.model_files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medi2i.natural' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
