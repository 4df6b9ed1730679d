"""Validation during training: sample held-out slices in both directions from the EMA weights.

Every ``interval`` iterations the handler copies the EMA weights into an evaluation copy of the method,
translates the fixed validation slices A->B and B->A with the method's sampler (deterministic, the
training grid), and records per direction

- ``val_<dir>_ssim``, ``val_<dir>_psnr``: on images mapped from [-1, 1] to [0, 1], data range 1
  (research digest section 6 item 14), mean over slices, via :mod:`medi2i.metrics`;
- ``val_<dir>_mae``: mean absolute error in the normalised [-1, 1] units;

and ``val_score`` = mean SSIM over both directions (the best-checkpoint criterion). Values go to
``engine.state.metrics`` (so MONAI's ``StatsHandler`` prints them), to the log, and to TensorBoard
(scalars, and an image grid per direction: rows source / prediction / reference).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medi2i.synthesis.ema import unwrap

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


def slice_metrics(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Mean SSIM / PSNR (on [0, 1], data range 1) and MAE (in [-1, 1] units) over slices ``(B, 1, H, W)``.

    Example:
        >>> x = torch.rand(2, 1, 16, 16) * 2 - 1
        >>> m = slice_metrics(x, x)
        >>> m["ssim"], m["mae"]
        (1.0, 0.0)
    """
    from medi2i.metrics import mae, psnr, ssim

    if pred.shape != ref.shape or pred.ndim != 4:
        raise ValueError(
            f"pred and ref must be equal (B, 1, H, W) tensors, got {tuple(pred.shape)}, {tuple(ref.shape)}"
        )
    p = ((pred.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    r = ((ref.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    ssims, psnrs, maes = [], [], []
    for k in range(p.shape[0]):
        ssims.append(ssim(p[k, 0], r[k, 0], data_range=1.0))
        psnrs.append(min(psnr(p[k, 0], r[k, 0], data_range=1.0), 100.0))  # identical slices give +inf
        maes.append(2.0 * mae(p[k, 0], r[k, 0]))
    return {"ssim": float(np.mean(ssims)), "psnr": float(np.mean(psnrs)), "mae": float(np.mean(maes))}


def image_grid(rows: list[torch.Tensor], max_columns: int = 4) -> torch.Tensor:
    """Tile ``rows`` of slices ``(B, 1, H, W)`` in [-1, 1] into one ``(1, R*H, C*W)`` image in [0, 1]."""
    tiles = [torch.cat(list(r[:max_columns, 0].float().cpu().clamp(-1, 1)), dim=1) for r in rows]
    return ((torch.cat(tiles, dim=0) + 1) / 2)[None]


class SynthesisValidationHandler:
    """Ignite handler validating a synthesis method in both directions from EMA weights.

    Args:
        method: the trained method (provides ``sample`` and ``network``).
        data: ``{"a": (V,1,H,W), "b": (V,1,H,W)}`` held-out paired slices
            (e.g. :func:`~medi2i.synthesis.data.validation_slices`).
        interval: validate every ``interval`` training iterations.
        ema: optional :class:`~medi2i.synthesis.ema.EMA` whose weights are evaluated (else the live weights).
        batch_size: slices per sampler call.
        num_steps: sampler steps (``None``: the method's training grid).
        log_dir: TensorBoard folder (``None``: no TensorBoard).
        validate_on_start: also validate before the first iteration (the untrained baseline).
        num_images: columns of the logged image grids.
    """

    def __init__(
        self,
        method: Any,
        data: Mapping[str, torch.Tensor],
        interval: int = 100,
        ema: Any = None,
        batch_size: int = 16,
        num_steps: int | None = None,
        log_dir: str | None = None,
        validate_on_start: bool = False,
        num_images: int = 4,
    ):
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if "a" not in data or "b" not in data or data["a"].shape != data["b"].shape:
            raise ValueError("data must hold equal-shaped 'a' and 'b' slices (V, 1, H, W)")
        self.method = method
        self.data = {"a": data["a"], "b": data["b"]}
        self.interval = int(interval)
        self.ema = ema
        self.batch_size = int(batch_size)
        self.num_steps = num_steps
        self.log_dir = log_dir
        self.validate_on_start = bool(validate_on_start)
        self.num_images = int(num_images)
        self.history: list[dict[str, float]] = []
        self._eval_method: Any = None
        self._writer: Any = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        if self.validate_on_start:
            engine.add_event_handler(Events.STARTED, self)

    def _evaluation_copy(self) -> Any:
        if self._eval_method is None:
            self._eval_method = copy.deepcopy(self.method)
        weights = self.ema.module if self.ema is not None else unwrap(self.method.network)
        unwrap(self._eval_method.network).load_state_dict(weights.state_dict())
        if hasattr(self._eval_method, "eval"):
            self._eval_method.eval()
        return self._eval_method

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str, device: torch.device) -> torch.Tensor:
        method = self._evaluation_copy()
        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size].to(device)
            outs.append(method.sample(chunk, direction, num_steps=self.num_steps).float().cpu())
        return torch.cat(outs)

    def __call__(self, engine: Engine) -> None:
        device = next(unwrap(self.method.network).parameters()).device
        results: dict[str, float] = {}
        grids = {}
        for direction, src, ref in (("a2b", "a", "b"), ("b2a", "b", "a")):
            pred = self.translate(self.data[src], direction, device)
            for name, value in slice_metrics(pred, self.data[ref]).items():
                results[f"val_{direction}_{name}"] = value
            grids[direction] = image_grid([self.data[src], pred, self.data[ref]], self.num_images)
        results["val_score"] = 0.5 * (results["val_a2b_ssim"] + results["val_b2a_ssim"])
        engine.state.metrics.update(results)
        self.history.append({"iteration": float(engine.state.iteration), **results})
        logger.info(
            "validation at iteration %d: %s",
            engine.state.iteration,
            ", ".join(f"{k}={v:.4f}" for k, v in results.items()),
        )
        if self.log_dir is not None:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=self.log_dir)
            for name, value in results.items():
                self._writer.add_scalar(name, value, engine.state.iteration)
            for direction, grid in grids.items():
                self._writer.add_image(f"val_{direction}", grid, engine.state.iteration)
            self._writer.flush()


def metric_score(name: str = "val_score") -> Any:
    """``score_function`` for checkpoint handlers: ``engine.state.metrics[name]`` (``None`` before any validation)."""

    def score(engine: Engine) -> float | None:
        value = engine.state.metrics.get(name)
        return None if value is None else float(value)

    return score
