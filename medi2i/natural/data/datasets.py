"""Unpaired, paired, exemplar-pair and single-image datasets, exactly reproducible per (seed, epoch, index).

Sampling (park_thesis.md section 1 "Unpaired sampling", official ``unaligned_dataset.py``): domain A is read
in order (``index mod |A|``), domain B at a uniformly random index, and an epoch has ``max(|A|, |B|)`` items.

Reproducibility: item ``index`` of epoch ``e`` draws everything (B's index, the pseudo-pair coin, and the
random state of every MONAI ``Randomizable`` in the transform, reseeded through ``Compose.set_random_state``)
from ``(seed, e, index)`` only. So an item is a pure function of ``(seed, epoch, index)``: the same with or
without DataLoader workers, and a trainer that resumes mid-epoch (setting the epoch with :meth:`set_epoch`
before the epoch's iterator is created) replays the uninterrupted run bit for bit.

Items are whatever the transform accepts: a dictionary (copied, then transformed) or a bare value (file path,
array, tensor) which is wrapped as ``{key: value}`` with the dataset's key (``"A"``, ``"B"``, ...). A
``transform`` of ``None`` returns the (wrapped) item unchanged, for in-memory tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable

from medi2i.errors import Medi2iInputError

__all__ = [
    "ExemplarPairDataset",
    "PairedDataset",
    "SingleImageDataset",
    "UnpairedDataset",
    "apply_seeded",
    "as_items",
    "item_seed",
]

# stream ids: separate random streams inside one item
_STREAM_SAMPLER, _STREAM_A, _STREAM_B, _STREAM_EXEMPLAR = 0, 1, 2, 3


def item_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A 32-bit seed derived from ``(seed, epoch, index, stream)`` (numpy ``SeedSequence``; MONAI wants < 2**32).

    Example:
        >>> item_seed(0, 0, 0) == item_seed(0, 0, 0) != item_seed(0, 1, 0)
        True
    """
    values = [int(seed), int(epoch), int(index), int(stream)]
    if min(values) < 0:
        raise ValueError(f"seed, epoch, index and stream must be >= 0, got {values}")
    return int(np.random.SeedSequence(values).generate_state(1, dtype=np.uint32)[0])


def apply_seeded(transform: Callable | None, data: dict, seed: int) -> dict:
    """Reseed ``transform`` (if ``Randomizable``) with ``seed``, then apply it to ``data``.

    The transform's random state is owned by the caller for one item; this is what makes augmentation a pure
    function of the item's seed (and independent of worker count or order).
    """
    if transform is None:
        return data
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed=seed)
    out = transform(data)
    if not isinstance(out, Mapping):
        raise ValueError(f"the transform must return a dictionary for one item, got {type(out).__name__}")
    return dict(out)


def _wrap(item: Any, key: str) -> dict:
    return copy.copy(dict(item)) if isinstance(item, Mapping) else {key: item}


def as_items(batch: Mapping[str, Any], keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Split a dictionary of stacked tensors ``{key: (N, ...)}`` into ``N`` per-item dictionaries.

    Example:
        >>> items = as_items({"image": torch.zeros(3, 1, 4, 4), "label": torch.zeros(3, 1, 4, 4, dtype=torch.long)})
        >>> len(items), tuple(items[0]["image"].shape)
        (3, (1, 4, 4))
    """
    names = list(keys) if keys is not None else list(batch)
    sizes = {len(batch[k]) for k in names}
    if len(sizes) != 1:
        raise ValueError(f"all entries must have the same length, got { {k: len(batch[k]) for k in names} }")
    return [{k: batch[k][i] for k in names} for i in range(sizes.pop())]


class _EpochDataset(torch.utils.data.Dataset):
    """Shared ``seed`` / ``set_epoch`` handling."""

    def __init__(self, seed: int):
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (0-based) whose items ``__getitem__`` returns."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += len(self)  # type: ignore[arg-type]
        if not 0 <= index < len(self):  # type: ignore[arg-type]
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")  # type: ignore[arg-type]
        return index

    def _seed(self, index: int, stream: int) -> int:
        return item_seed(self.seed, self.epoch, index, stream)


def _nonempty(items: Sequence[Any], name: str) -> list[Any]:
    out = list(items)
    if not out:
        raise Medi2iInputError(f"no items for {name}", field=name, expected="at least one image")
    return out


class UnpairedDataset(_EpochDataset):
    """Unpaired domains A and B: ``{"A": (C, H, W), "B": (C', H', W')}`` (+ ``A_path``/``B_path`` for files).

    Args:
        a_items: domain A items (paths, arrays, tensors, or dictionaries for ``transform_a``).
        b_items: domain B items.
        transform_a: dictionary transform producing key ``"A"`` (e.g. ``photo_transforms("A")``), or ``None``.
        transform_b: dictionary transform producing key ``"B"``, or ``None``.
        seed: base seed of every draw.

    Item ``i`` of epoch ``e``: A = ``a_items[i % |A|]``; B = ``b_items[j]`` with ``j`` uniform from
    ``numpy.random.default_rng(item_seed(seed, e, i))``; each side's augmentation reseeded from its own stream.

    Example:
        >>> ds = UnpairedDataset([torch.zeros(1, 4, 4)], [torch.ones(1, 4, 4)] * 3, None, None)
        >>> len(ds), sorted(ds[0])
        (3, ['A', 'B'])
    """

    def __init__(
        self,
        a_items: Sequence[Any],
        b_items: Sequence[Any],
        transform_a: Callable | None,
        transform_b: Callable | None,
        *,
        seed: int = 0,
    ):
        super().__init__(seed)
        self.a_items = _nonempty(a_items, "domain A")
        self.b_items = _nonempty(b_items, "domain B")
        self.transform_a = transform_a
        self.transform_b = transform_b

    def __len__(self) -> int:
        return max(len(self.a_items), len(self.b_items))

    def b_index(self, index: int) -> int:
        """The B index drawn for item ``index`` of the current epoch."""
        rng = np.random.default_rng(self._seed(index, _STREAM_SAMPLER))
        return int(rng.integers(len(self.b_items)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        a = apply_seeded(self.transform_a, _wrap(self.a_items[index % len(self.a_items)], "A"), self._seed(index, 1))
        b = apply_seeded(self.transform_b, _wrap(self.b_items[self.b_index(index)], "B"), self._seed(index, 2))
        for out, key in ((a, "A"), (b, "B")):
            if key not in out:
                raise ValueError(f"the domain {key} transform must produce key {key!r}, got {sorted(map(str, out))}")
        return {**a, **b}


class PairedDataset(_EpochDataset):
    """Aligned items (e.g. ``{"label", "image"}`` for SPADE): ``transform(items[i])`` reseeded per item.

    Args:
        items: dictionaries (or bare values wrapped as ``{"image": value}``).
        transform: dictionary transform applied to the whole item (one crop/flip for all its keys), or ``None``.
        seed: base seed.
    """

    def __init__(self, items: Sequence[Any], transform: Callable | None, *, seed: int = 0):
        super().__init__(seed)
        self.items = _nonempty(items, "items")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        return apply_seeded(self.transform, _wrap(self.items[index], "image"), self._seed(index, 1))


def _hflip(x: Any) -> Any:
    return torch.flip(x, dims=(-1,)) if isinstance(x, torch.Tensor) else x


class ExemplarPairDataset(PairedDataset):
    """Exemplar-based pairs for RABIT (dtp_rabit_nst.md 2.8): ``label``, ``image``, ``exemplar``, ``exemplar_label``.

    With probability ``pseudo_pair_prob`` the exemplar is a *pseudo-pair*: the same item under another random
    augmentation and a horizontal flip (so the target image is known: the pseudo-pair loss); otherwise it is a
    different item drawn uniformly. ``pseudo_pair`` (bool tensor) says which.

    Args:
        items: dictionaries with ``image_key`` and ``label_key``.
        transform: paired transform (e.g. ``photo_transforms("image", label_keys="label")``) or ``None``.
        pseudo_pair_prob: probability of a pseudo-pair (RABIT-lite: 0.3); 1.0 when there is a single item.
        seed: base seed.
        image_key: image key of the items.
        label_key: label key of the items.
    """

    def __init__(
        self,
        items: Sequence[Any],
        transform: Callable | None,
        *,
        pseudo_pair_prob: float = 0.3,
        seed: int = 0,
        image_key: str = "image",
        label_key: str = "label",
    ):
        super().__init__(items, transform, seed=seed)
        if not 0.0 <= float(pseudo_pair_prob) <= 1.0:
            raise ValueError(f"pseudo_pair_prob must be in [0, 1], got {pseudo_pair_prob!r}")
        self.pseudo_pair_prob = float(pseudo_pair_prob)
        self.image_key, self.label_key = image_key, label_key

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        rng = np.random.default_rng(self._seed(index, _STREAM_SAMPLER))
        pseudo = len(self.items) == 1 or bool(rng.random() < self.pseudo_pair_prob)
        other = index if pseudo else int((index + 1 + rng.integers(len(self.items) - 1)) % len(self.items))
        item = apply_seeded(self.transform, _wrap(self.items[index], self.image_key), self._seed(index, 1))
        ref = apply_seeded(self.transform, _wrap(self.items[other], self.image_key), self._seed(index, 3))
        for key in (self.image_key, self.label_key):
            if key not in item:
                raise ValueError(f"items must provide {key!r} after the transform, got {sorted(map(str, item))}")
        exemplar, exemplar_label = ref[self.image_key], ref[self.label_key]
        if pseudo:
            exemplar, exemplar_label = _hflip(exemplar), _hflip(exemplar_label)
        return {
            "label": item[self.label_key],
            "image": item[self.image_key],
            "exemplar": exemplar,
            "exemplar_label": exemplar_label,
            "pseudo_pair": torch.tensor(pseudo),
        }


class SingleImageDataset(_EpochDataset):
    """SinCUT (park_thesis.md 4.6): ``crops_per_epoch`` random crops of one image per domain, ``{"A", "B"}``.

    Args:
        image_a: the domain-A image (path, array, tensor or ``{"A": ...}``).
        image_b: the domain-B image.
        transform: a crop transform over keys ``("A", "B")`` built with ``allow_missing_keys=True`` (e.g.
            ``photo_transforms(("A", "B"), preprocess="crop", crop_size=64, allow_missing_keys=True)``); it is
            applied to each domain separately, with independent crops.
        crops_per_epoch: epoch length.
        seed: base seed.
    """

    def __init__(self, image_a: Any, image_b: Any, transform: Callable | None, *, crops_per_epoch: int, seed: int = 0):
        super().__init__(seed)
        if int(crops_per_epoch) < 1:
            raise ValueError(f"crops_per_epoch must be >= 1, got {crops_per_epoch!r}")
        self.image_a, self.image_b = image_a, image_b
        self.transform = transform
        self.crops_per_epoch = int(crops_per_epoch)

    def __len__(self) -> int:
        return self.crops_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        out: dict[str, Any] = {}
        for key, image, stream in (("A", self.image_a, _STREAM_A), ("B", self.image_b, _STREAM_B)):
            try:
                out.update(apply_seeded(self.transform, _wrap(image, key), self._seed(index, stream)))
            except KeyError as err:
                raise ValueError(
                    f"SingleImageDataset applies the transform to each domain alone; build it with "
                    f"allow_missing_keys=True (missing key {err})"
                ) from None
        return out
