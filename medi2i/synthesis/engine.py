"""Training glue for image-to-image methods: a MONAI ``SupervisedTrainer`` whose iteration asks the method
for its loss, plus the handlers a bundle composes around it (resume, LR schedule, image logging).

Why ``SupervisedTrainer`` with an overridden ``_iteration`` (the pattern of the MONAI zoo's latent
diffusion trainer) rather than a bare ignite ``Engine``: the bundle then gets MONAI's workflow
properties (``train::trainer``, ``max_epochs``), ``StatsHandler``/``TensorBoardStatsHandler``/
``LrScheduleHandler``, the ``DistributedSampler`` epoch hook and ``ConfigWorkflow`` checks for free; the
only part that differs from supervised training is the body of one step, which delegates to the
method's ``training_loss(a, b, paired=...)`` (the method owns the Bi-DPM unrolled chains, Eq. 7-8).

The method interface (see :mod:`medi2i.synthesis`): ``training_loss(a, b, *, paired) -> {"loss": ..., ...}``,
``sample(x, direction, *, num_steps=None)``, ``config()``, ``network``.

Distributed training: the unrolled chains call the velocity network N times before one backward, which
``DistributedDataParallel``'s reducer does not support without ``static_graph`` assumptions; instead the
trainer all-reduces (averages) the gradients itself after ``backward`` when a process group with more than
one rank is initialised, and broadcasts rank 0's weights when the run starts. The arithmetic is the same as
DDP's (mean of per-rank gradients); only the communication overlap is lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedTrainer

from medi2i.checkpoint import CheckpointHandler, load_checkpoint
from medi2i.errors import Medi2iInputError

if TYPE_CHECKING:
    from ignite.engine import Engine

    from medi2i.typing import PathLike

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere; ``"bf16"`` is refused off CUDA.

    Example:
        >>> resolve_precision("auto", "cpu")
        'fp32'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        return "bf16" if cuda else "fp32"
    if precision == "bf16" and not cuda:
        raise ValueError("precision='bf16' needs a CUDA device (mixed precision is GPU-only); use 'fp32' or 'auto'")
    return precision


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SynthesisTrainer(SupervisedTrainer):
    """One training step = ``method.training_loss`` -> backward -> (all-reduce) -> clip -> optimizer step.

    Args:
        device: training device.
        max_epochs: epochs to run (an epoch is ``epoch_length`` iterations, default ``len(loader)``).
        train_data_loader: yields batches ``{"a": (B,1,H,W), "b": (B,1,H,W)[, "paired": (B,) bool]}``.
        method: the synthesis method (owns ``network``); moved to ``device``.
        optimizer: optimiser over ``method.network`` parameters.
        epoch_length: iterations per epoch.
        grad_clip_norm: clip the global gradient norm to this value (paper: not given; digest default 1.0);
            0 disables clipping (the norm is still reported).
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"`` or ``"bf16"`` (CUDA only).
        train_handlers: ignite/MONAI handlers with ``attach``.
        kwargs: passed on to ``SupervisedTrainer``.

    The step's output ``engine.state.output`` is ``{"loss": float, <loss parts>: float, "grad_norm": float}``.
    A non-finite loss stops training with an error naming the iteration instead of corrupting the weights.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        method: Any,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        grad_clip_norm: float = 1.0,
        precision: str = "auto",
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ):
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs!r}")
        if not float(grad_clip_norm) >= 0.0:
            raise ValueError(f"grad_clip_norm must be >= 0, got {grad_clip_norm!r}")
        for name in ("training_loss", "network"):
            if not hasattr(method, name):
                raise ValueError(f"method must provide {name!r} (the synthesis method interface), got {type(method)}")
        self.precision = resolve_precision(precision, device)
        self.method = method.to(device) if hasattr(method, "to") else method
        self.grad_clip_norm = float(grad_clip_norm)
        super().__init__(
            device=device,
            max_epochs=int(max_epochs),
            train_data_loader=train_data_loader,
            network=method.network,
            optimizer=optimizer,
            loss_function=method.training_loss,
            epoch_length=epoch_length,
            train_handlers=train_handlers,
            amp=False,
            decollate=False,
            **kwargs,
        )
        from ignite.engine import Events

        dataset = getattr(train_data_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            # batches are a pure function of (seed, epoch, index): this is what makes resume exact
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: dataset.set_epoch(engine.state.epoch - 1))
        if _world_size() > 1:
            self.add_event_handler(Events.STARTED, self._broadcast_weights)

    def _parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.method.network.parameters() if p.requires_grad]

    def _broadcast_weights(self, engine: Engine) -> None:
        for tensor in list(self.method.network.parameters()) + list(self.method.network.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)

    def _all_reduce_gradients(self) -> None:
        grads = [p.grad for p in self._parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= _world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _iteration(self, engine: Engine, batchdata: Mapping[str, Any]) -> dict[str, float]:  # type: ignore[override]
        if not isinstance(batchdata, Mapping) or "a" not in batchdata or "b" not in batchdata:
            raise ValueError("a synthesis batch must be a dict with 'a' and 'b' tensors (B, 1, H, W)")
        a = torch.as_tensor(batchdata["a"]).to(self.state.device, non_blocking=self.non_blocking)
        b = torch.as_tensor(batchdata["b"]).to(self.state.device, non_blocking=self.non_blocking)
        paired = batchdata.get("paired")
        if paired is not None:
            paired = torch.as_tensor(paired).to(self.state.device)
        self.method.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device_type=torch.device(self.state.device).type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            parts = self.method.training_loss(a, b, paired=paired)
        loss = parts["loss"]
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(
                f"non-finite training loss {float(loss.detach())} at iteration {engine.state.iteration}; "
                "lower the learning rate or check the data normalisation"
            )
        loss.backward()
        if _world_size() > 1:
            self._all_reduce_gradients()
        params = self._parameters()
        max_norm = self.grad_clip_norm if self.grad_clip_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        output = {name: float(value.detach()) for name, value in parts.items()}
        output["grad_norm"] = float(grad_norm)
        return output


class ResumeHandler:
    """Ignite handler: at ``STARTED``, restore every object from a :mod:`medi2i.checkpoint` file (if it exists).

    Put the trainer itself in ``objects`` (key ``"trainer"``) to restore the iteration/epoch counters,
    together with the network, EMA, optimiser, LR scheduler and :class:`~medi2i.checkpoint.RNGState`.
    The configured ``max_epochs`` is kept, so a finished run can be extended.

    Args:
        path: checkpoint file; ``None``, ``""`` or a missing file (with ``missing_ok``) means a fresh start.
        objects: name -> object with ``load_state_dict``.
        missing_ok: start fresh when the file does not exist (else raise).
        checkpoint_handler: optional :class:`~medi2i.checkpoint.CheckpointHandler` whose best score is restored.
        engine_key: name under which the attached engine's counters are restored (added at ``attach``, so a
            config need not reference the trainer from inside its own handler list).
    """

    def __init__(
        self,
        path: PathLike | None,
        objects: Mapping[str, Any],
        missing_ok: bool = False,
        checkpoint_handler: Any = None,
        engine_key: str = "trainer",
    ):
        self.path = Path(path) if path else None
        self.engine_key = engine_key
        self.objects = dict(objects)
        self.missing_ok = bool(missing_ok)
        self.checkpoint_handler = checkpoint_handler

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        self.objects.setdefault(self.engine_key, engine)
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.path is None:
            return
        if not self.path.is_file():
            if self.missing_ok:
                logger.info("no checkpoint at %s: starting a fresh run", self.path)
                return
            raise Medi2iInputError("checkpoint to resume from not found", path=self.path, field="resume_from")
        max_epochs = engine.state.max_epochs
        payload = load_checkpoint(self.path, self.objects)
        if engine.state.epoch > max_epochs:
            raise Medi2iInputError(
                "checkpoint is past the configured number of epochs",
                path=self.path,
                field="max_epochs",
                found=max_epochs,
                expected=f">= {engine.state.epoch}",
            )
        engine.state.max_epochs = max_epochs
        if self.checkpoint_handler is not None and "best_score" in payload:
            self.checkpoint_handler.best_score = float(payload["best_score"])
        logger.info("resumed from %s at iteration %d", self.path, engine.state.iteration)


def constant_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_iterations: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """LR schedule: linear warm-up over ``warmup_iterations`` then constant (paper: constant 1e-4).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> s = constant_with_warmup(opt, 4)
        >>> [round(g["lr"], 2) for g in opt.param_groups]
        [0.25]
    """
    if int(warmup_iterations) < 0:
        raise ValueError(f"warmup_iterations must be >= 0, got {warmup_iterations!r}")
    steps = int(warmup_iterations)
    factor: Callable[[int], float] = (lambda it: min(1.0, (it + 1) / steps)) if steps else (lambda it: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def from_output(key: str) -> Callable[[Any], float]:
    """``output_transform`` for MONAI stats handlers: the float ``output[key]`` of a training step."""

    def transform(output: Any) -> float:
        return float(output[key])

    return transform


class TrainingCheckpointHandler(CheckpointHandler):
    """:class:`medi2i.checkpoint.CheckpointHandler` that also saves the engine it is attached to (as ``engine_key``).

    Bundles cannot list the trainer among the objects of a handler that the trainer itself is built with (a
    circular reference), so the engine joins the checkpoint objects when the handler is attached.
    """

    def __init__(self, *args: Any, engine_key: str = "trainer", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.engine_key = engine_key

    def attach(self, engine: Engine) -> None:
        self.objects.setdefault(self.engine_key, engine)
        super().attach(engine)
