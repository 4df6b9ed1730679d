"""Real models for the QA notebooks: the bundle's trained model when the README command made one, else a
tiny model trained here through the same bundle config (and labelled as such).

The QA notebooks must show what Bi-DPM and RL-I2IT really produce, yet run top to bottom on a fresh machine
within the CI budget. :func:`bundle_model` therefore returns

* ``<bundle>/models/model.pt`` when it exists (left by ``python -m monai.bundle run`` with the bundle's CPU
  overlay, e.g. the README's main command), labelled ``"<Method> bundle model"``; or
* a model trained by the **same** ``train.json`` + ``demo_cpu.json`` workflow with fewer iterations into a
  separate folder (never into the bundle), labelled ``"<Method> tiny notebook model (<n> <unit>), not the
  demo model"`` so no figure can be mistaken for the method's quality.

:func:`registration_trajectory` returns the accumulated field after each mean-plan step of a trained
RL-I2IT agent (the deterministic test-time policy, so the field after ``k`` steps is the ``k``-step
registration) together with the label Dice at every step, on the fixed grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medi2i.errors import Medi2iInputError

if TYPE_CHECKING:
    from medi2i.io import Volume
    from medi2i.registration.sac import RLI2ITAgent
    from medi2i.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["BUNDLES", "DemoModel", "bundle_model", "find_bundle", "registration_trajectory"]


@dataclass(frozen=True)
class _BundleRecipe:
    """How to train a tiny model with a bundle's own configs: ``overrides(n)`` shortens the run to ``n``
    iterations/episodes (keys not returned keep the overlay's value)."""

    method: str
    unit: str
    overrides: Callable[[int], dict[str, Any]]
    run: tuple[str, ...]
    logs: str  # TensorBoard folder relative to the bundle root / the tiny run's folder


BUNDLES: dict[str, _BundleRecipe] = {
    "bidpm": _BundleRecipe(
        method="Bi-DPM",
        unit="iterations",
        overrides=lambda n: {
            "iterations_per_epoch": n,
            "max_epochs": 1,
            "val_interval": n,
            "val_slices_per_subject": 2,
        },
        run=("$@train::trainer.run()",),
        logs="runs",
    ),
    "rl_i2it": _BundleRecipe(
        method="RL-I2IT",
        unit="episodes",
        overrides=lambda n: {
            "max_episodes": n,
            "val_interval": n,
            "checkpoint_interval": n,
            "log_interval": max(1, n // 5),
        },
        run=("$@agent_saver.attach(@trainer)", "$@trainer.fit(@max_episodes)"),
        logs="models/tensorboard",
    ),
}


@dataclass(frozen=True)
class DemoModel:
    """A model file for a notebook: ``path`` (``model.pt``), ``label`` (for titles and tables),
    ``trained_here`` (True for the tiny notebook model) and ``log_dir`` (TensorBoard logs, or None)."""

    path: Path
    label: str
    trained_here: bool
    log_dir: Path | None = None


def find_bundle(name: str, search_from: PathLike | None = None) -> Path:
    """The folder ``bundles/<name>`` of this checkout: looked for above ``search_from`` (default: the working
    directory), then beside the installed package (editable installs).

    Raises:
        Medi2iInputError: no such bundle folder (e.g. a non-editable install without the repository).
    """
    if name not in BUNDLES:
        raise ValueError(f"bundle must be one of {sorted(BUNDLES)}, got {name!r}")
    import medi2i

    start = Path(search_from or Path.cwd()).resolve()
    candidates = [p / "bundles" / name for p in (start, *start.parents)]
    candidates.append(Path(medi2i.__file__).resolve().parents[1] / "bundles" / name)
    for folder in candidates:
        if (folder / "train.json").is_file() and (folder / "demo_cpu.json").is_file():
            return folder
    raise Medi2iInputError(
        "bundle folder not found (the notebooks need the repository checkout)",
        path=start,
        field="bundle",
        found=name,
        expected=f"bundles/{name}/train.json above the working directory or beside the medi2i package",
    )


def bundle_model(
    name: str,
    work_dir: PathLike,
    *,
    bundle_dir: PathLike | None = None,
    tiny: int = 60,
    prefer_bundle_model: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> DemoModel:
    """The bundle's trained model, or a tiny one trained now with the bundle's own configs.

    Args:
        name: ``"bidpm"`` or ``"rl_i2it"``.
        work_dir: folder for the tiny model (``<work_dir>/models/model.pt``) and its logs; an existing tiny
            model there is reused.
        bundle_dir: the bundle folder (default :func:`find_bundle`).
        tiny: iterations (Bi-DPM) or episodes (RL-I2IT) of the tiny run.
        prefer_bundle_model: use ``<bundle_dir>/models/model.pt`` when present.
        overrides: extra config overrides for the tiny run (e.g. ``{"seed": 1}``).

    Returns:
        :class:`DemoModel`.
    """
    if name not in BUNDLES:
        raise ValueError(f"bundle must be one of {sorted(BUNDLES)}, got {name!r}")
    if int(tiny) < 1:
        raise ValueError(f"tiny must be >= 1, got {tiny!r}")
    recipe = BUNDLES[name]
    bundle = Path(bundle_dir) if bundle_dir is not None else find_bundle(name)
    trained = bundle / "models" / "model.pt"
    if prefer_bundle_model and trained.is_file():
        logs = bundle / recipe.logs
        return DemoModel(trained, f"{recipe.method} bundle model", False, logs if logs.is_dir() else None)
    work = Path(work_dir).resolve()
    model_file = work / "models" / "model.pt"
    label = f"{recipe.method} tiny notebook model ({int(tiny)} {recipe.unit}), not the demo model"
    if not model_file.is_file():
        _train_tiny(bundle, work, recipe, int(tiny), dict(overrides or {}))
        if not model_file.is_file():
            raise RuntimeError(f"the tiny {recipe.method} run finished without writing {model_file}")
    logs = work / recipe.logs
    return DemoModel(model_file, label, True, logs if logs.is_dir() else None)


def _train_tiny(bundle: Path, work: Path, recipe: _BundleRecipe, n: int, extra: dict[str, Any]) -> None:
    from monai.bundle import ConfigWorkflow

    settings = recipe.overrides(n)
    settings.update(
        bundle_root=str(bundle.resolve()),
        ckpt_dir=str(work / "models"),
        log_dir=str(work / "runs"),
        output_dir=str(work / "eval"),
        run=list(recipe.run),
    )
    settings.update(extra)
    logger.info("training a tiny %s model (%d %s) in %s", recipe.method, n, recipe.unit, work)
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "train.json"), str(bundle / "demo_cpu.json")],
        meta_file=str(bundle / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **settings,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


@dataclass
class RegistrationTrajectory:
    """``ddfs``: the accumulated field after steps ``1..T`` (each ``(ndim, *spatial)``, voxels, fixed grid);
    ``dice``: mean label Dice after steps ``0..T`` (``0`` = identity; empty without labels); ``steps`` ``0..T``."""

    ddfs: list[np.ndarray]
    dice: list[float]
    steps: list[int]


def registration_trajectory(
    agent: RLI2ITAgent,
    fixed: Volume,
    moving: Volume,
    steps: int | None = None,
    *,
    fixed_label: np.ndarray | None = None,
    moving_label: np.ndarray | None = None,
    label_ids: Sequence[int] | None = None,
) -> RegistrationTrajectory:
    """Fields and Dice after every mean-plan step of ``agent`` (step ``k`` = the ``k``-step registration).

    Args:
        agent: a loaded agent (:func:`medi2i.registration.model_files.load_agent`).
        fixed: fixed volume (the grid of the fields).
        moving: moving volume on the same grid.
        steps: number of steps ``T`` (default: the agent's ``test_steps``).
        fixed_label: optional fixed label map ``(*spatial)``.
        moving_label: optional moving label map (warped with nearest neighbour).
        label_ids: labels scored (default: every non-zero label present, :func:`medi2i.metrics.overlap.dice`).
    """
    from medi2i.metrics.overlap import mean_dice
    from medi2i.registration.volumes import register_volumes, warp_label

    if (fixed_label is None) != (moving_label is None):
        raise ValueError("give both fixed_label and moving_label, or neither")
    total = agent.config.test_steps if steps is None else int(steps)
    if total < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    ddfs = [register_volumes(agent, fixed, moving, k).ddf for k in range(1, total + 1)]
    dice: list[float] = []
    if fixed_label is not None and moving_label is not None:
        ids = list(label_ids) if label_ids is not None else None
        for ddf in (np.zeros_like(ddfs[0]), *ddfs):
            dice.append(mean_dice(warp_label(np.asarray(moving_label), ddf), np.asarray(fixed_label), ids))
    return RegistrationTrajectory(ddfs, dice, list(range(total + 1)))
