"""One adversarial trainer for every ``medi2i.natural`` method, with checkpoints that resume exactly.

A method (CycleGAN, CUT, SPADE, ...) subclasses :class:`AdversarialMethod`: it owns its networks, builds its
optimisers (:meth:`~AdversarialMethod.configure_optimizers`) and performs one full training step itself
(:meth:`~AdversarialMethod.training_step`: the alternating G and D updates with their own ``zero_grad`` /
``backward`` / ``step``), returning a :class:`StepOutput` of float losses and images to look at.

:class:`AdversarialTrainer` wraps an ignite ``Engine`` around that step and adds what the official codes lack
(park_thesis.md section 1, "Checkpointing in the official code"): an atomic checkpoint of the method's networks
(including lazily built ones such as CUT's projection MLP, built by :meth:`~AdversarialMethod.setup_lazy` from
the first batch *before* the optimisers exist), optimisers, LR schedulers, method extras (image pools), the
iteration counter and the Python/NumPy/torch RNG states. Resuming from it continues bit-identically on CPU:
``2k`` iterations in one run equal ``k`` iterations + checkpoint + fresh objects + resume + ``k`` iterations,
also when ``k`` falls inside an epoch (tested in ``tests/natural/test_natural_trainer.py``).

How the data stay exact across a resume: iteration ``i`` (0-based) always gets batch ``i mod N`` of loader pass
``i div N`` (``N = len(loader)``), and before pass ``q`` the trainer calls ``dataset.set_epoch(q)`` (and the
sampler's ``set_epoch``), then opens the loader iterator and reads its first batch under a forked torch RNG
seeded from ``(seed, q)`` (so a shuffling ``DataLoader``'s order and worker seeds depend only on ``(seed, q)``).
A resumed run re-opens pass ``q`` the same way and skips the batches already used. Loaders without ``len``
need ``epoch_length``; each epoch is then a fresh pass of ``epoch_length`` batches. LR schedulers (constant then
linear decay, :func:`medi2i.natural.toolkit.schedules.linear_decay`, unit = epochs of ``epoch_length``
iterations) are stepped at the last iteration of each epoch *before* that iteration's checkpoint is written, so
no state lives in ignite's epoch events.

GPU runs resume exactly only as far as cuDNN kernels are deterministic.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from medi2i.checkpoint import RNGState, load_checkpoint, resolve_device, save_checkpoint
from medi2i.errors import Medi2iInputError
from medi2i.natural.toolkit.schedules import linear_decay

if TYPE_CHECKING:
    from ignite.engine import Engine

    from medi2i.typing import PathLike

__all__ = ["AdversarialMethod", "AdversarialTrainer", "StepOutput", "move_to_device", "seeded"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint_last.pt"
MODEL_NAME = "model.pt"


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the torch CPU RNG seeded by ``seed`` and restore the previous state afterwards
    (``seed=None``: no seeding, the global RNG is used and advanced as usual).

    Example:
        >>> with seeded(0):
        ...     a = torch.rand(1)
        >>> with seeded(0):
        ...     b = torch.rand(1)
        >>> bool(a == b)
        True
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) moved to ``device``; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


@dataclass
class StepOutput:
    """What one training step reports.

    Attributes:
        losses: name -> float (logged; e.g. ``{"G_GAN": 0.9, "D_A": 0.24}``).
        images: name -> ``(B, C, H, W)`` tensor in [-1, 1], detached (shown in TensorBoard; e.g. ``real_A``).
    """

    losses: dict[str, float]
    images: dict[str, torch.Tensor] = field(default_factory=dict)


class AdversarialMethod(nn.Module, ABC):
    """Base class of the natural-image methods (the small surface the trainer and the model files use).

    Subclasses set ``name`` (the :data:`medi2i.natural.model_files.METHODS` key), call
    ``super().__init__(**config)`` with their JSON-able keyword arguments (kept in ``self.config``, from which
    :func:`medi2i.natural.model_files.load_model` rebuilds the method), and implement the abstract methods.

    Contract of :meth:`training_step`: it updates every network itself (alternating G then D updates, each with
    its own ``zero_grad`` / ``backward`` / ``step`` on ``optimizers[...]``) and returns a :class:`StepOutput`.
    Randomness must come from the global torch RNG (restored on resume) or from generators whose state is
    returned by :meth:`extra_training_state` (e.g. image pools).
    """

    name: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        try:
            self.config: dict[str, Any] = json.loads(json.dumps(config))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{type(self).__name__} config must be JSON-able (it is stored in model files): {err}"
            ) from None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AdversarialMethod:
        """Rebuild a method from its ``config`` dict."""
        return cls(**dict(config))

    @abstractmethod
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Name -> optimiser (e.g. ``{"G": ..., "D": ...}``); called once, after :meth:`setup_lazy`."""

    @abstractmethod
    def training_step(
        self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int
    ) -> StepOutput:
        """One training iteration on ``batch`` (already on the device); ``step`` is the 0-based iteration index."""

    @abstractmethod
    def translate(self, inputs: torch.Tensor | Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
        """Inference (eval mode, no grad): ``(B, C_in, H, W)`` in [-1, 1] -> ``(B, C_out, H, W)`` in [-1, 1]."""

    @abstractmethod
    def inference_modules(self) -> dict[str, nn.Module]:
        """The submodules a model file stores for inference (e.g. ``{"G_A": ..., "G_B": ...}``)."""

    def setup_lazy(self, batch: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Build modules whose shapes depend on the data (CUT's MLP) from ``batch``; default: nothing."""

    def extra_training_state(self) -> dict[str, Any]:
        """Training state outside the networks' ``state_dict`` (image pools...), plain containers of tensors."""
        return {}

    def load_extra_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`extra_training_state`."""
        if state:
            raise ValueError(f"{type(self).__name__} has no extra training state, got keys {sorted(state)}")

    @staticmethod
    def set_requires_grad(modules: nn.Module | list[nn.Module], flag: bool) -> None:
        """Freeze (``False``) or unfreeze every parameter of ``modules`` (D during the G update)."""
        for module in modules if isinstance(modules, list) else [modules]:
            for param in module.parameters():
                param.requires_grad_(flag)


class _Stateful:
    """Adapter: a pair of ``state_dict`` / ``load_state_dict`` callables as one checkpointable object."""

    def __init__(self, get: Any, put: Any) -> None:
        self.state_dict = get
        self.load_state_dict = put


class _BatchStream:
    """Infinite, resumable batch iterable: iteration ``i`` gets batch ``i mod N`` of loader pass ``i div N``."""

    def __init__(self, loader: Any, *, epoch_length: int, seed: int, start: Any) -> None:
        self.loader = loader
        self.epoch_length = epoch_length
        self.seed = seed
        self.start = start  # callable -> iterations already done
        try:
            self.length: int | None = len(loader)
        except TypeError:
            self.length = None

    def _set_epoch(self, q: int) -> None:
        for owner in (getattr(self.loader, "dataset", None), getattr(self.loader, "sampler", None)):
            set_epoch = getattr(owner, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(q)

    def open_pass(self, q: int, skip: int) -> Iterator[Any]:
        """The batches of pass ``q`` from position ``skip`` on (the first one read under a seeded RNG)."""
        self._set_epoch(q)
        with seeded(self.seed * 1_000_003 + q):
            iterator = iter(self.loader)
            try:
                for _ in range(skip):
                    next(iterator)
                first = next(iterator)
            except StopIteration:
                raise ValueError(
                    f"the data loader gave fewer than {skip + 1} batches in pass {q} (len {self.length})"
                ) from None
        return itertools.chain([first], iterator)

    def __iter__(self) -> Iterator[Any]:
        if self.length == 0:
            raise ValueError("the data loader is empty (len 0)")
        done = int(self.start())
        size = self.length if self.length else self.epoch_length
        q, p = divmod(done, size)
        while True:
            count = p
            for batch in self.open_pass(q, p):
                yield batch
                count += 1
                if count == size:
                    break
            if count < size and self.length is None:
                raise ValueError(f"the data loader ran out after {count} batches; epoch_length is {size}")
            q, p = q + 1, 0


class AdversarialTrainer:
    """Train an :class:`AdversarialMethod` with an ignite ``Engine``; checkpoint and resume exactly.

    Args:
        method: the method (moved to ``device``).
        loader: yields batch dicts (a ``DataLoader`` or any re-iterable); its dataset's ``set_epoch`` is called.
        max_epochs: epochs of ``epoch_length`` iterations (ignored if ``max_iterations`` is given).
        epoch_length: iterations per epoch (default ``len(loader)``; required for loaders without ``len``).
        device: ``None`` = CUDA if available, else CPU (:func:`medi2i.checkpoint.resolve_device`).
        n_constant, n_decay: epochs at the base lr, then epochs of linear decay (the CycleGAN schedule); both
            ``None`` = constant lr.
        checkpoint_dir: folder for ``checkpoint_last.pt`` (every ``save_every`` iterations and at the end) and the
            final inference model ``model.pt`` (:func:`medi2i.natural.model_files.save_model`).
        save_every: iterations between checkpoints (0 = only at the end).
        resume: ``None`` (fresh run), a checkpoint path, or ``"latest"`` (``checkpoint_dir/checkpoint_last.pt``
            if it exists, else a fresh run).
        seed: seeds the global RNGs (Python, NumPy, torch) when the trainer is built (a resumed run then restores
            the checkpoint's RNG states) and the per-pass data order.
        log_dir: TensorBoard folder (optional): losses every ``log_every`` iterations, images every
            ``image_every`` iterations.
        log_every: iterations between loss log lines.
        image_every: iterations between image summaries (0 = never).
        max_iterations: stop after this many iterations in total (instead of ``max_epochs``).
        progress: show an ignite/tqdm progress bar.
        model_path: where to save the final inference model (default ``checkpoint_dir/model.pt`` if a
            ``checkpoint_dir`` is given, else not saved).
        data_record: the domains' input/output conventions stored in the model file for ``medi2i translate``
            (see :func:`medi2i.natural.model_files.save_model`), e.g. ``{"A": {"kind": "mr", "channels": 1}}``.

    Example:
        Train 2 epochs, then continue a stopped run from its checkpoint::

            trainer = AdversarialTrainer(CycleGAN(in_channels=1, out_channels=1), loader, max_epochs=2,
                                         n_constant=1, n_decay=1, checkpoint_dir="runs/cyclegan", resume="latest")
            trainer.run()
    """

    def __init__(
        self,
        method: AdversarialMethod,
        loader: Any,
        *,
        max_epochs: int = 1,
        epoch_length: int | None = None,
        device: str | torch.device | None = None,
        n_constant: int | None = None,
        n_decay: int | None = None,
        checkpoint_dir: PathLike | None = None,
        save_every: int = 500,
        resume: PathLike | None = None,
        seed: int = 0,
        log_dir: PathLike | None = None,
        log_every: int = 50,
        image_every: int = 500,
        max_iterations: int | None = None,
        progress: bool = False,
        model_path: PathLike | None = None,
        data_record: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(method, AdversarialMethod):
            raise TypeError(f"method must be an AdversarialMethod, got {type(method).__name__}")
        for name, value, low in (
            ("max_epochs", max_epochs, 1),
            ("save_every", save_every, 0),
            ("log_every", log_every, 1),
            ("image_every", image_every, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_iterations is not None and (not isinstance(max_iterations, int) or max_iterations < 1):
            raise ValueError(f"max_iterations must be an integer >= 1 or None, got {max_iterations!r}")
        if (n_constant is None) != (n_decay is None):
            raise ValueError(f"give both n_constant and n_decay or neither, got {n_constant!r} and {n_decay!r}")
        if epoch_length is None:
            try:
                epoch_length = len(loader)
            except TypeError:
                raise ValueError("epoch_length is required for a loader without len()") from None
        if not isinstance(epoch_length, int) or epoch_length < 1:
            raise ValueError(f"epoch_length must be an integer >= 1 (is the loader empty?), got {epoch_length!r}")
        if getattr(loader, "persistent_workers", False):
            logger.warning("persistent_workers=True: workers keep their dataset copy, set_epoch(q) will not reach them")
        if resume is not None and str(resume) == "latest" and checkpoint_dir is None:
            raise ValueError("resume='latest' needs a checkpoint_dir")
        self.method = method
        self.loader = loader
        self.device = resolve_device(device)
        self.max_epochs = max_epochs
        self.max_iterations = max_iterations
        self.epoch_length = epoch_length
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.save_every = save_every
        self.seed = int(seed)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.log_every = log_every
        self.image_every = image_every
        self.progress = progress
        self.data_record = None if data_record is None else dict(data_record)
        if model_path is not None:
            self.model_path: Path | None = Path(model_path)
        else:
            self.model_path = None if self.checkpoint_dir is None else self.checkpoint_dir / MODEL_NAME
        self.resume_path = self._resume_path(resume)
        self.iteration = 0
        self.last_output: StepOutput | None = None
        self._writer: Any = None

        self.stream = _BatchStream(loader, epoch_length=epoch_length, seed=self.seed, start=lambda: self.iteration)
        _seed_everything(self.seed)  # before lazily built modules take their initial weights
        self.method.to(self.device)
        self.method.train()
        first = move_to_device(self.stream.open_pass(0, 0).__next__(), self.device)
        self.method.setup_lazy(first)
        self.optimizers = self.method.configure_optimizers()
        if n_constant is None:
            self.schedulers: dict[str, Any] = {}
        else:
            self.schedulers = {name: linear_decay(opt, n_constant, n_decay) for name, opt in self.optimizers.items()}
        self.engine = self._build_engine()
        if self.resume_path is not None:
            self.load(self.resume_path)

    # ------------------------------------------------------------------ checkpoints
    def _resume_path(self, resume: PathLike | None) -> Path | None:
        if resume is None:
            return None
        if str(resume) == "latest":
            assert self.checkpoint_dir is not None
            path = self.checkpoint_dir / CHECKPOINT_NAME
            if not path.is_file():
                logger.info("resume='latest': no checkpoint in %s, starting a fresh run", self.checkpoint_dir)
                return None
            return path
        path = Path(resume)
        if not path.is_file():
            raise Medi2iInputError("checkpoint to resume from not found", path=path, expected="a checkpoint_*.pt file")
        return path

    def _objects(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "optimizers": _Stateful(
                lambda: {name: opt.state_dict() for name, opt in self.optimizers.items()},
                lambda state: _load_each(self.optimizers, state, "optimizers"),
            ),
            "schedulers": _Stateful(
                lambda: {name: sched.state_dict() for name, sched in self.schedulers.items()},
                lambda state: _load_each(self.schedulers, state, "schedulers"),
            ),
            "method_extra": _Stateful(self.method.extra_training_state, self.method.load_extra_training_state),
            "rng": RNGState(),
        }

    def save(self, path: PathLike | None = None) -> Path:
        """Write the training checkpoint (atomically) to ``path`` (default ``checkpoint_dir/checkpoint_last.pt``)."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("no path given and no checkpoint_dir set")
            path = self.checkpoint_dir / CHECKPOINT_NAME
        extra = {"iteration": self.iteration, "method_name": self.method.name, "method_config": self.method.config}
        return save_checkpoint(path, self._objects(), extra=extra)

    def load(self, path: PathLike) -> None:
        """Restore everything from a checkpoint written by :meth:`save` (the engine continues from its iteration)."""
        path = Path(path)
        payload = _read_checkpoint(path)
        if payload.get("method_name") != self.method.name:
            raise Medi2iInputError(
                "checkpoint belongs to another method",
                path=path,
                field="method_name",
                found=payload.get("method_name"),
                expected=self.method.name,
            )
        try:
            load_checkpoint(path, self._objects())
        except Medi2iInputError:
            raise
        except (RuntimeError, KeyError, ValueError) as err:
            raise Medi2iInputError(
                f"checkpoint does not fit this {self.method.name} configuration ({err})",
                path=path,
                field="method_config",
                found=payload.get("method_config"),
                expected=self.method.config,
            ) from None
        self.iteration = int(payload["iteration"])
        logger.info("resumed %s from %s at iteration %d", self.method.name, path, self.iteration)

    # ------------------------------------------------------------------ engine
    def _build_engine(self) -> Engine:
        from ignite.engine import Engine, Events

        engine = Engine(self._process)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._after_iteration)
        engine.add_event_handler(Events.COMPLETED, self._on_completed)
        if self.progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(engine, output_transform=lambda out: out.losses)
        return engine

    def _process(self, engine: Engine, batch: Any) -> StepOutput:
        batch = move_to_device(batch, self.device)
        output = self.method.training_step(batch, self.optimizers, engine.state.iteration - 1)
        if not isinstance(output, StepOutput):
            raise TypeError(f"{type(self.method).__name__}.training_step must return a StepOutput")
        return output

    def _after_iteration(self, engine: Engine) -> None:
        self.iteration = engine.state.iteration
        output: StepOutput = engine.state.output
        self.last_output = output
        if self.iteration % self.epoch_length == 0:
            for scheduler in self.schedulers.values():
                scheduler.step()
        if self.iteration % self.log_every == 0:
            text = " ".join(f"{k}={v:.4g}" for k, v in output.losses.items())
            logger.info(
                "iteration %d epoch %d: %s", self.iteration, math.ceil(self.iteration / self.epoch_length), text
            )
        self._log_tensorboard(output)
        if self.checkpoint_dir is not None and self.save_every and self.iteration % self.save_every == 0:
            self.save()

    def _on_completed(self, engine: Engine) -> None:
        if self.checkpoint_dir is not None:
            self.save()
        if self.model_path is not None:
            from medi2i.natural.model_files import save_model

            save_model(self.model_path, self.method, data=self.data_record)
        if self._writer is not None:
            self._writer.flush()

    def _log_tensorboard(self, output: StepOutput) -> None:
        if self.log_dir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        if self.iteration % self.log_every == 0:
            for key, value in output.losses.items():
                self._writer.add_scalar(f"loss/{key}", value, self.iteration)
            for name, opt in self.optimizers.items():
                self._writer.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], self.iteration)
        if self.image_every and self.iteration % self.image_every == 0:
            for key, image in output.images.items():
                first = image[0].detach().float().cpu()
                if first.shape[0] not in (1, 3):
                    first = first[:1]
                self._writer.add_image(f"images/{key}", ((first + 1) / 2).clamp(0, 1), self.iteration)

    @property
    def total_iterations(self) -> int:
        """Iterations the whole run ends at."""
        return self.max_iterations if self.max_iterations is not None else self.max_epochs * self.epoch_length

    def run(self) -> StepOutput | None:
        """Train until ``max_epochs`` / ``max_iterations`` (continuing a resumed run); returns the last step's
        output (``None`` if the checkpoint was already at the end)."""
        if self.iteration >= self.total_iterations:
            logger.info("nothing to do: at iteration %d of %d", self.iteration, self.total_iterations)
            return self.last_output
        self.method.train()
        limit = (
            {"max_iters": self.max_iterations} if self.max_iterations is not None else {"max_epochs": self.max_epochs}
        )
        if self.iteration > 0:
            self.engine.load_state_dict({"iteration": self.iteration, "epoch_length": self.epoch_length, **limit})
            self.engine.run(self.stream)
        else:
            self.engine.run(self.stream, epoch_length=self.epoch_length, **limit)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.last_output


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global state is what data code seeds
    torch.manual_seed(seed)


def _load_each(targets: Mapping[str, Any], state: Mapping[str, Any], what: str) -> None:
    if set(targets) != set(state):
        raise KeyError(f"{what}: checkpoint has {sorted(state)}, this run {sorted(targets)}")
    for name, target in targets.items():
        target.load_state_dict(state[name])


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise several types
        raise Medi2iInputError(f"cannot read checkpoint ({type(err).__name__}: {err})", path=path) from None
    if not isinstance(payload, dict) or "iteration" not in payload:
        raise Medi2iInputError(
            "not a medi2i.natural training checkpoint",
            path=path,
            field="iteration",
            found=sorted(payload) if isinstance(payload, dict) else type(payload).__name__,
            expected="a file written by AdversarialTrainer",
        )
    return payload
