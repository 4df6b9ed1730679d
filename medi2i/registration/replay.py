"""FIFO replay buffer of RL-I2IT transitions, on the device or in pinned host memory (D12, D20).

Storage is preallocated on the first push (one tensor per field plus one scratch row), so pushing a
batch in which only some transitions pass the ``Dice > 0.3`` filter (D20) needs no host sync: rejected
transitions are written to the scratch row, kept ones to consecutive FIFO slots computed with a cumulative
sum on the device. Sampling is without replacement (top-k of uniform keys over the filled slots).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

_FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ReplayBuffer:
    """Ring buffer of transition dicts with a checkpointable ``state_dict``.

    Args:
        capacity: number of transitions kept (oldest evicted first).
        device: where the storage lives (default CPU; pinned when CUDA is available and the device is CPU).
        storage_dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` for floating fields of more than one
            dimension per item (images, fields, plans); rewards and flags stay float32 / bool.
        seed: seed of the sampling generator (saved in ``state_dict``).

    Example:
        >>> buf = ReplayBuffer(capacity=3)
        >>> for i in range(5):
        ...     buf.push({"x": torch.full((1, 2), float(i))}, keep=torch.tensor([True]))
        >>> len(buf), sorted(buf.storage["x"][:3, 0].tolist())  # 0 and 1 were evicted
        (3, [2.0, 3.0, 4.0])
    """

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, storage_dtype: str = "float32", seed: int = 0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if storage_dtype not in _FLOAT_DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(_FLOAT_DTYPES)}, got {storage_dtype!r}")
        self.capacity = int(capacity)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.storage_dtype = _FLOAT_DTYPES[storage_dtype]
        self.storage: dict[str, torch.Tensor] = {}
        # counters live on the device so push() never reads them back
        self.position = torch.zeros((), dtype=torch.long, device=self.device)
        self.count = torch.zeros((), dtype=torch.long, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return int(self.count)  # host sync: for tests and logging only

    def _dtype(self, value: torch.Tensor) -> torch.dtype:
        if value.is_floating_point() and value.ndim > 1 and value[0].numel() > 1:
            return self.storage_dtype
        return value.dtype

    def _allocate(self, batch: Mapping[str, torch.Tensor]) -> None:
        pin = self.device.type == "cpu" and torch.cuda.is_available()
        for key, value in batch.items():
            shape = (self.capacity + 1, *value.shape[1:])  # + 1 scratch row for rejected transitions
            self.storage[key] = torch.zeros(shape, dtype=self._dtype(value), device=self.device, pin_memory=pin)

    def push(self, batch: Mapping[str, torch.Tensor], keep: torch.Tensor) -> None:
        """Append the items of ``batch`` (each ``(B, ...)``) where ``keep`` ``(B,)`` is true, FIFO."""
        if not batch:
            raise ValueError("batch must hold at least one field")
        if not self.storage:
            self._allocate(batch)
        if set(batch) != set(self.storage):
            raise ValueError(f"expected fields {sorted(self.storage)}, got {sorted(batch)}")
        keep = keep.to(self.device, torch.bool).reshape(-1)
        offsets = torch.cumsum(keep.long(), 0) - 1
        slots = torch.where(keep, (self.position + offsets) % self.capacity, torch.full_like(offsets, self.capacity))
        for key, value in batch.items():
            if value.shape[0] != keep.shape[0]:
                raise ValueError(f"field {key!r} has batch {value.shape[0]}, keep has {keep.shape[0]}")
            target = self.storage[key]
            target.index_copy_(0, slots, value.detach().to(device=self.device, dtype=target.dtype))
        added = keep.long().sum()
        self.position = (self.position + added) % self.capacity
        self.count = torch.clamp(self.count + added, max=self.capacity)

    def sample(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Draw ``batch_size`` distinct filled slots (float32 on ``device``) plus ``weight`` ``(N,)``.

        ``weight`` is 1 for real transitions and 0 for padding picks while fewer than ``batch_size``
        transitions are stored; losses average with it, so the call never has to know the count.
        """
        if not self.storage:
            raise ValueError("cannot sample from an empty replay buffer")
        if not 1 <= batch_size <= self.capacity:
            raise ValueError(f"batch_size must be in [1, {self.capacity}], got {batch_size}")
        filled = torch.arange(self.capacity, device=self.device) < self.count
        keys = torch.rand(self.capacity, generator=self.generator, device=self.device)
        keys = torch.where(filled, keys, keys - 2.0)  # filled slots first, then random padding
        index = keys.topk(batch_size).indices
        out_device = torch.device(device) if device is not None else self.device
        out = {}
        for key, value in self.storage.items():
            item = value.index_select(0, index).to(out_device, non_blocking=True)
            out[key] = item.float() if item.is_floating_point() else item
        out["weight"] = filled.index_select(0, index).float().to(out_device)
        return out

    def state_dict(self) -> dict[str, object]:
        """Storage, counters and sampling RNG: restoring resumes sampling exactly."""
        return {
            "storage": {k: v.cpu() for k, v in self.storage.items()},
            "position": self.position.cpu(),
            "count": self.count.cpu(),
            "generator": self.generator.get_state(),
            "capacity": self.capacity,
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        if int(state["capacity"]) != self.capacity:  # type: ignore[arg-type]
            raise ValueError(f"checkpoint buffer capacity {state['capacity']} != this buffer's {self.capacity}")
        pin = self.device.type == "cpu" and torch.cuda.is_available()
        self.storage = {
            k: v.to(self.device).pin_memory() if pin else v.to(self.device)
            for k, v in state["storage"].items()  # type: ignore[union-attr]
        }
        self.position = state["position"].to(self.device)  # type: ignore[union-attr]
        self.count = state["count"].to(self.device)  # type: ignore[union-attr]
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
