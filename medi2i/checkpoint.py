"""Checkpoints that resume exactly and are never half-written.

A checkpoint is one ``torch.save`` file holding the ``state_dict()`` of every object needed to
continue a run (networks, EMA copies, optimisers, schedulers, AMP scaler, the ignite engine's
counters, :class:`RNGState`, a replay buffer...). It is written atomically (temporary file in
the same folder, then ``os.replace``) and read with ``torch.load(weights_only=True)``, so only
tensors and plain Python containers can be in it.

Why not MONAI's ``CheckpointSaver``: it builds ignite's ``DiskSaver`` with ``atomic=False``
(monai/handlers/checkpoint_saver.py), so a process killed while saving leaves a truncated
``model.pt`` at the final path. :class:`CheckpointHandler` below saves through
:func:`save_checkpoint` instead, and :func:`load_checkpoint` restores everything in one call.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path

if TYPE_CHECKING:
    from ignite.engine import Engine

    from medi2i.typing import PathLike

FORMAT_VERSION = 1


class Stateful(Protocol):
    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> Any: ...


class RNGState:
    """The Python, NumPy and torch (CPU and every CUDA device) random states, as a checkpointable object.

    NumPy's legacy global state is stored as tensors and ints so the checkpoint loads with
    ``weights_only=True``.

    Example:
        >>> rng = RNGState()
        >>> state = rng.state_dict()
        >>> a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
        >>> rng.load_state_dict(state)
        >>> (random.random(), float(np.random.rand()), float(torch.rand(1))) == a
        True
    """

    def state_dict(self) -> dict[str, Any]:
        # the legacy global generator is what MONAI's set_determinism and most data code seed
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
        return {
            "python": list(random.getstate()[1]) + [random.getstate()[0]],
            "python_gauss": random.getstate()[2],
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached": float(cached),
            },
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        python = list(state["python"])
        random.setstate((python[-1], tuple(python[:-1]), state["python_gauss"]))
        numpy_state = state["numpy"]
        np.random.set_state(  # noqa: NPY002
            (
                numpy_state["kind"],
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["pos"],
                numpy_state["has_gauss"],
                numpy_state["cached"],
            )
        )
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: PathLike, objects: Mapping[str, Stateful], *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{name: obj.state_dict()}`` (plus ``extra`` plain values) atomically to ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> net = torch.nn.Linear(2, 1)
        >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt", {"network": net})
        >>> sorted(torch.load(path, weights_only=True))
        ['format_version', 'network']
    """
    payload: dict[str, Any] = {name: obj.state_dict() for name, obj in objects.items()}
    if extra:
        clash = sorted(set(extra) & set(payload))
        if clash:
            raise ValueError(f"extra keys clash with object names: {clash}")
        payload.update(extra)
    payload["format_version"] = FORMAT_VERSION
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(
    path: PathLike,
    objects: Mapping[str, Stateful],
    *,
    map_location: str | torch.device | None = "cpu",
    strict: bool = True,
) -> dict[str, Any]:
    """Restore every object in ``objects`` from ``path`` (``weights_only=True``); return the whole payload.

    Raises:
        Medi2iInputError: missing or unreadable file, or (``strict``) an object absent from the checkpoint.
    """
    file = Path(path)
    if not file.is_file():
        raise Medi2iInputError("checkpoint not found", path=file, expected="a file written by medi2i training")
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise Medi2iInputError(f"cannot read checkpoint ({type(err).__name__}: {err})", path=file) from None
    if not isinstance(payload, dict):
        raise Medi2iInputError("not a medi2i checkpoint", path=file, found=type(payload).__name__, expected="a dict")
    missing = [name for name in objects if name not in payload]
    if strict and missing:
        raise Medi2iInputError(
            "checkpoint lacks objects needed to resume",
            path=file,
            field="keys",
            found=sorted(payload),
            expected=missing,
        )
    for name, obj in objects.items():
        if name in payload:
            obj.load_state_dict(payload[name])
    return payload


class CheckpointHandler:
    """Ignite handler: atomic periodic, final and best checkpoints of a set of objects.

    Files: ``<save_dir>/<prefix>_last.pt`` every ``save_interval`` iterations (overwritten),
    ``<prefix>_final.pt`` when the run completes, and ``<prefix>_best.pt`` whenever
    ``score_function(engine)`` improves (higher is better unless ``mode="min"``).

    Args:
        save_dir: output folder.
        objects: name -> object with ``state_dict`` (add the engine itself to resume counters).
        save_interval: iterations between ``last`` checkpoints; 0 disables them.
        prefix: file name prefix.
        score_function: optional callable returning the validation score for ``best``.
        mode: ``"max"`` or ``"min"`` for the score.
        best_event_name: the event that triggers the best check (default: epoch completed).
    """

    def __init__(
        self,
        save_dir: PathLike,
        objects: Mapping[str, Stateful],
        save_interval: int = 0,
        prefix: str = "checkpoint",
        score_function: Callable[[Engine], float] | None = None,
        mode: str = "max",
        best_event_name: Any = None,
    ):
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0, got {save_interval}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.save_dir = Path(save_dir)
        self.objects = dict(objects)
        self.save_interval = save_interval
        self.prefix = prefix
        self.score_function = score_function
        self.mode = mode
        self.best_event_name = best_event_name
        self.best_score = -math.inf if mode == "max" else math.inf

    def path(self, tag: str) -> Path:
        return self.save_dir / f"{self.prefix}_{tag}.pt"

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if self.save_interval:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._save, "last")
        engine.add_event_handler(Events.COMPLETED, self._save, "final")
        if self.score_function is not None:
            engine.add_event_handler(self.best_event_name or Events.EPOCH_COMPLETED, self._maybe_best)

    def _save(self, engine: Engine, tag: str) -> None:
        save_checkpoint(self.path(tag), self.objects, extra={"best_score": self.best_score})

    def _maybe_best(self, engine: Engine) -> None:
        assert self.score_function is not None  # attach() registers this only with a score function
        score = float(self.score_function(engine))
        better = score > self.best_score if self.mode == "max" else score < self.best_score
        if better:
            self.best_score = score
            self._save(engine, "best")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU (nothing hard-codes a device)."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bundle_model_path(bundle_or_checkpoint: PathLike) -> Path:
    """A bundle folder means ``<bundle>/models/model.pt``, a folder holding ``model.pt`` (e.g.
    ``bundles/natural/models/cyclegan``) means that file; a file path is used as is.

    Example:
        >>> import tempfile
        >>> bundle_model_path(tempfile.mkdtemp()).parts[-2:]
        ('models', 'model.pt')
    """
    path = Path(bundle_or_checkpoint)
    if not path.is_dir():
        return path
    if (path / "model.pt").is_file() and not (path / "models" / "model.pt").is_file():
        return path / "model.pt"
    return path / "models" / "model.pt"


def read_model_file(
    bundle_or_checkpoint: PathLike, *, required: tuple[str, ...], kind: str, train_command: str, model: str = "model"
) -> tuple[Path, dict[str, Any]]:
    """Locate and read a trained-model file written by a bundle (``weights_only``), checking its keys.

    Args:
        bundle_or_checkpoint: bundle folder (its ``models/model.pt``) or the file itself.
        required: top-level keys the file must hold (weights and the settings that rebuild the model).
        kind: what the file is, for messages (e.g. ``"translator"``).
        model: what is missing when there is no file (e.g. ``"registration model"``).
        train_command: the command that makes one, shown when the file is missing.

    Returns:
        ``(path, payload)``.

    Raises:
        Medi2iInputError: missing file (with the training command), unreadable file, or missing keys.
    """
    path = bundle_model_path(bundle_or_checkpoint)
    if not path.is_file():
        raise Medi2iInputError(
            f"no trained {model} found",
            path=path,
            expected=f"a {kind} file; train first ({train_command}) or pass --checkpoint",
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise several types; all are the user's input problem
        raise Medi2iInputError(f"cannot read the {kind} file ({type(err).__name__}: {err})", path=path) from None
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise Medi2iInputError(
            f"not a medi2i {kind} file",
            path=path,
            found=sorted(payload) if isinstance(payload, dict) else type(payload).__name__,
            expected=f"keys {list(required)} (written by the bundle's training)",
        )
    return path, payload


class BestModelSaver(ABC):
    """Ignite handler writing a model file at every new best score, or at completion if none was scored.

    Subclasses implement :meth:`save`. The best score is checkpointable (``state_dict``), so a resumed run
    keeps selecting against the score it had reached.

    Args:
        path: the model file (e.g. ``bundles/<name>/models/model.pt``).
        score_function: ``engine -> float | None`` (``None`` = not scored at this event).
        mode: ``"max"`` or ``"min"``.
        event: ignite event for the score check (default ``ITERATION_COMPLETED``).
    """

    def __init__(
        self,
        path: PathLike,
        score_function: Callable[[Engine], float | None] | None = None,
        mode: str = "max",
        event: Any = None,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path = Path(path)
        self.score_function = score_function
        self.mode = mode
        self.event = event
        self.best: float | None = None

    @abstractmethod
    def save(self) -> Path:
        """Write the model file (each model family knows its own format)."""

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self._final)
        if self.score_function is not None:
            engine.add_event_handler(self.event or Events.ITERATION_COMPLETED, self._maybe_save)

    def state_dict(self) -> dict[str, Any]:
        return {"has_best": self.best is not None, "best": 0.0 if self.best is None else float(self.best)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"]) if state["has_best"] else None

    def _maybe_save(self, engine: Engine) -> None:
        score = self.score_function(engine) if self.score_function is not None else None
        if score is None:
            return
        score = float(score)
        if self.best is None or (score > self.best if self.mode == "max" else score < self.best):
            self.best = score
            self.save()

    def _final(self, engine: Engine) -> None:
        if self.best is None or not self.path.is_file():
            self.save()
