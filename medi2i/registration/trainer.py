"""Training glue for RL-I2IT: an ignite engine whose iteration plays one episode (and its updates).

Why a bare ignite ``Engine`` and not MONAI's ``SupervisedTrainer``: an RL iteration has no single network,
optimiser or loss (four optimisers, a replay buffer and an environment), so the supervised hooks would be
empty; the engine still gives events, handlers, ``state_dict`` counters and ``medi2i.checkpoint`` resume.
One iteration = one episode on ``num_envs`` pairs drawn with the trainer's own generator (saved in the
checkpoint, so a resumed run draws the same pairs). Scalars go to TensorBoard every ``log_interval``
episodes (the only host syncs), validation on held-out pairs every ``val_interval`` episodes keeps the
best checkpoint by mean Dice after ``test_steps`` steps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from medi2i.checkpoint import CheckpointHandler, RNGState, load_checkpoint
from medi2i.registration.inference import register
from medi2i.registration.learner import RLI2ITLearner

logger = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Registration pairs in memory: images ``(N, 1, *spatial)`` in [0, 1], int64 labels, pair ids and
    optional bool foreground masks ``(N, 1, *spatial)`` (for the masked K-means reward)."""

    fixed: torch.Tensor
    moving: torch.Tensor
    fixed_label: torch.Tensor
    moving_label: torch.Tensor
    ids: list[str]
    fixed_mask: torch.Tensor | None = None
    moving_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.fixed.shape[0]

    def select(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(fixed, moving, fixed_label, moving_label[, fixed_mask, moving_mask])`` of the indexed pairs."""
        pair = (self.fixed[index], self.moving[index], self.fixed_label[index], self.moving_label[index])
        if self.fixed_mask is None or self.moving_mask is None:
            return pair
        return (*pair, self.fixed_mask[index], self.moving_mask[index])


def load_pairs(
    manifest: str | Path,
    split: str | None,
    spatial_dims: int,
    model_size: Sequence[int],
    data_root: str | Path | None = None,
    masks: bool = False,
) -> PairSet:
    """Read a registration manifest split through ``registration_preprocessing`` (images to [0, 1],
    labels as integers, both padded/cropped to ``model_size``).

    With ``masks=True`` the ``fixed_mask``/``moving_mask`` columns are loaded too (non-zero = foreground),
    checked to lie on their image's voxel grid (shape and affine) before the common pad/crop, and returned
    as bool tensors.

    Raises:
        Medi2iInputError: a missing manifest, unreadable files, an empty split, missing mask columns or a
            mask on a different grid than its image.
    """
    from medi2i.data.manifest import read_manifest
    from medi2i.data.slices import model_size_transform
    from medi2i.data.transforms import registration_preprocessing
    from medi2i.errors import Medi2iInputError

    manifest = Path(manifest)
    rows = read_manifest(manifest, Path(data_root) if data_root else manifest.parent, kind="registration", split=split)
    if not rows:
        raise Medi2iInputError("no registration pairs", path=manifest, field="split", found=split)
    keys: tuple[str, ...] = ("fixed", "moving", "fixed_label", "moving_label")
    if masks:
        keys = keys + ("fixed_mask", "moving_mask")
        for row in rows:
            for key in keys[4:]:
                if not row.get(key):
                    raise Medi2iInputError(
                        "masks=True needs a mask for every pair", path=manifest, field=key, found=row.get("pair_id")
                    )
    load = registration_preprocessing(label_keys=keys[2:], spatial_dims=spatial_dims)
    size = model_size_transform(list(keys), tuple(int(s) for s in model_size), background=0.0)
    items = []
    for row in rows:
        item = load({k: row[k] for k in keys})
        for key in keys[4:]:
            _check_same_grid(item[key], item[key.replace("_mask", "")], row[key], key)
        items.append(size(item))
    stack = {k: torch.stack([torch.as_tensor(item[k]).as_subclass(torch.Tensor) for item in items]) for k in keys}
    return PairSet(
        stack["fixed"].float(),
        stack["moving"].float(),
        stack["fixed_label"].long(),
        stack["moving_label"].long(),
        [str(row["pair_id"]) for row in rows],
        stack["fixed_mask"] != 0 if masks else None,
        stack["moving_mask"] != 0 if masks else None,
    )


def all_ordered_pairs(pairs: PairSet) -> PairSet:
    """Every ordered pair ``(a, b)``, ``a != b``, of the distinct subjects found in ``pairs`` (data augmentation).

    Subjects are the distinct (image, label[, mask]) entries among the fixed and moving sides (compared by
    value), so a ring of N pairs over N subjects becomes N (N - 1) pairs; ids are ``"<i>_<j>"`` of the
    subjects' first occurrences (``"<pair id>:fixed"`` / ``"<pair id>:moving"``).

    Example:
        >>> a, b, c = (torch.full((1, 1, 2, 2), v) for v in (0.1, 0.2, 0.3))
        >>> ring = PairSet(torch.cat([a, b, c]), torch.cat([b, c, a]), torch.zeros(3, 1, 2, 2, dtype=torch.long),
        ...                torch.zeros(3, 1, 2, 2, dtype=torch.long), ["ab", "bc", "ca"])
        >>> len(all_ordered_pairs(ring))
        6
    """
    sides = [("fixed", "fixed_label", "fixed_mask"), ("moving", "moving_label", "moving_mask")]
    has_masks = pairs.fixed_mask is not None and pairs.moving_mask is not None
    subjects: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, str]] = []
    for i in range(len(pairs)):
        for side, (img_key, lab_key, mask_key) in zip(("fixed", "moving"), sides, strict=True):
            image, label = getattr(pairs, img_key)[i], getattr(pairs, lab_key)[i]
            mask = getattr(pairs, mask_key)[i] if has_masks else None
            if not any(torch.equal(image, s[0]) and torch.equal(label, s[1]) for s in subjects):
                subjects.append((image, label, mask, f"{pairs.ids[i]}:{side}"))
    index = [(a, b) for a in range(len(subjects)) for b in range(len(subjects)) if a != b]
    if not index:
        raise ValueError("all_ordered_pairs needs at least 2 distinct subjects")

    def stack(part: int, which: int) -> torch.Tensor:
        return torch.stack([subjects[pair[which]][part] for pair in index])  # type: ignore[misc]

    return PairSet(
        stack(0, 0),
        stack(0, 1),
        stack(1, 0),
        stack(1, 1),
        [f"{subjects[a][3]}_{subjects[b][3]}" for a, b in index],
        stack(2, 0) if has_masks else None,
        stack(2, 1) if has_masks else None,
    )


def _check_same_grid(mask: torch.Tensor, image: torch.Tensor, path: str | Path, key: str) -> None:
    """Raise ``Medi2iInputError`` unless ``mask`` has its image's shape and (when known) affine."""
    from medi2i.errors import Medi2iInputError

    if tuple(mask.shape) != tuple(image.shape):
        raise Medi2iInputError(
            "the mask is not on its image's voxel grid",
            path=path,
            field=key,
            found=tuple(mask.shape[1:]),
            expected=tuple(image.shape[1:]),
        )
    affine_m, affine_i = getattr(mask, "affine", None), getattr(image, "affine", None)
    if affine_m is not None and affine_i is not None:
        if not torch.allclose(torch.as_tensor(affine_m).double(), torch.as_tensor(affine_i).double(), atol=1e-3):
            raise Medi2iInputError(
                "the mask is not on its image's voxel grid (different affine)",
                path=path,
                field=key,
                found=torch.as_tensor(affine_m).tolist(),
                expected=torch.as_tensor(affine_i).tolist(),
            )


class PairSampler:
    """Draws the pair indices of each episode; its generator is part of the checkpoint (environment RNG)."""

    def __init__(self, count: int, per_episode: int, seed: int) -> None:
        self.count, self.per_episode = count, per_episode
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self) -> torch.Tensor:
        return torch.randint(0, self.count, (self.per_episode,), generator=self.generator)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


class RLI2ITTrainer(Engine):
    """Ignite engine: ``_iteration`` = one :meth:`RLI2ITLearner.run_episode` on drawn training pairs.

    Args:
        learner: the :class:`~medi2i.registration.learner.RLI2ITLearner` (agent, buffer, env).
        train_pairs: training :class:`PairSet`.
        val_pairs: optional held-out pairs for validation Dice.
        output_dir: folder for checkpoints (``rl_i2it_{last,final,best}.pt``) and TensorBoard logs.
        log_interval: episodes between TensorBoard writes (0 = never).
        val_interval: episodes between validations (0 = never).
        checkpoint_interval: episodes between ``last`` checkpoints (0 = only ``final``/``best``).

    Example:
        >>> import tempfile
        >>> from medi2i.registration.config import smoke_config
        >>> from medi2i.registration.synthetic import synthetic_pairs
        >>> p = synthetic_pairs(4)
        >>> pairs = PairSet(p.fixed, p.moving, p.fixed_label, p.moving_label, ["a", "b", "c", "d"])
        >>> learner = RLI2ITLearner(smoke_config(warmup_episodes=1), (32, 32), "cpu")
        >>> trainer = RLI2ITTrainer(learner, pairs, pairs, tempfile.mkdtemp(), log_interval=0, val_interval=2)
        >>> trainer.fit(2).state.metrics["val_dice"] > 0
        True
    """

    def __init__(
        self,
        learner: RLI2ITLearner,
        train_pairs: PairSet,
        val_pairs: PairSet | None = None,
        output_dir: str | Path | None = None,
        log_interval: int = 10,
        val_interval: int = 0,
        checkpoint_interval: int = 0,
    ) -> None:
        if min(log_interval, val_interval, checkpoint_interval) < 0:
            raise ValueError("log_interval, val_interval and checkpoint_interval must be >= 0")
        if val_interval and val_pairs is None:
            raise ValueError("val_interval > 0 needs val_pairs")
        if (checkpoint_interval or val_interval) and output_dir is None:
            raise ValueError("checkpoints need an output_dir")
        super().__init__(self._episode)
        self.learner, self.train_pairs, self.val_pairs = learner, train_pairs, val_pairs
        self.sampler = PairSampler(len(train_pairs), learner.config.num_envs, learner.config.seed)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.log_interval, self.val_interval = log_interval, val_interval
        self.writer = None
        if self.output_dir is not None and log_interval:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))
            self.add_event_handler(Events.ITERATION_COMPLETED(every=log_interval), self._log)
        if val_interval:
            self.add_event_handler(Events.ITERATION_COMPLETED(every=val_interval), self._validate)
        self.checkpoint = None
        if self.output_dir is not None:
            self.checkpoint = CheckpointHandler(
                self.output_dir,
                self.checkpoint_objects(),
                save_interval=checkpoint_interval,
                prefix="rl_i2it",
                score_function=(lambda engine: engine.state.metrics["val_dice"]) if val_interval else None,
                best_event_name=Events.ITERATION_COMPLETED(every=val_interval) if val_interval else None,
            )
            self.checkpoint.attach(self)

    def checkpoint_objects(self) -> dict[str, Any]:
        """What a checkpoint holds: learner (agent, optimisers, buffer), engine counters, pair sampler, RNGs."""
        return {"learner": self.learner, "engine": self, "sampler": self.sampler, "rng": RNGState()}

    def _episode(self, engine: Engine, _: object) -> dict[str, torch.Tensor]:
        index = self.sampler()
        return self.learner.run_episode(*self.train_pairs.select(index))

    def _log(self, engine: Engine) -> None:
        if self.writer is None:
            return
        step = self.learner.global_step
        for key, value in engine.state.output.items():
            self.writer.add_scalar(str(key), float(value), step)
        for key, value in engine.state.metrics.items():
            self.writer.add_scalar(f"val/{key}", float(value), step)

    def validate(self) -> float:
        """Mean Dice of the validation pairs after ``test_steps`` mean-plan steps."""
        assert self.val_pairs is not None  # guarded in __init__
        pairs = self.val_pairs
        result = register(
            self.learner.agent,
            pairs.fixed,
            pairs.moving,
            fixed_label=pairs.fixed_label,
            moving_label=pairs.moving_label,
            track_ssim=False,
        )
        return float(result.dice[:, -1].mean())

    def _validate(self, engine: Engine) -> None:
        engine.state.metrics["val_dice"] = self.validate()
        logger.info("episode %d: val Dice %.4f", engine.state.iteration, engine.state.metrics["val_dice"])

    def fit(self, max_episodes: int) -> RLI2ITTrainer:
        """Run (or, after :meth:`resume`, continue) until ``max_episodes`` episodes in total."""
        if max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {max_episodes}")
        # one epoch = one episode, so a resumed run only has to raise max_epochs (ignite's resume path)
        self.run([None], max_epochs=max_episodes, epoch_length=1)
        if self.writer is not None:
            self.writer.flush()
        return self

    def resume(self, path: str | Path) -> dict[str, Any]:
        """Restore learner, counters, pair sampler and RNG states from a checkpoint for an exact continuation."""
        return load_checkpoint(path, self.checkpoint_objects(), map_location=self.learner.device)
