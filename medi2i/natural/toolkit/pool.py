"""Image history buffer of CycleGAN (Shrivastava et al. 2017; park_thesis.md section 3.2).

The discriminator is updated with a mix of current fakes and fakes produced at earlier steps. Per image of a
query (the CycleGAN code's semantics):

- while fewer than ``size`` images are stored, the image is stored and returned as is;
- once full, with probability 1/2 a uniformly chosen stored image is returned and replaced by the new one,
  otherwise the new image is returned (and not stored).

``size=0`` disables the buffer (the input is returned unchanged). Stored images are detached copies. The
buffer draws from its own ``torch.Generator`` so that the rest of training does not change its choices, and
:meth:`ImagePool.state_dict` holds the stored images *and* the generator state, so a resumed run continues
exactly (the official code does not checkpoint the pool, section 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """History buffer of generated images, ``query((B, C, H, W)) -> (B, C, H, W)``.

    Args:
        size: capacity in images (50 in CycleGAN; 0 = pass-through).
        seed: seed of the buffer's own random generator.

    Example:
        >>> pool = ImagePool(2)
        >>> out = pool.query(torch.zeros(2, 1, 4, 4))  # fills the buffer, returns the input
        >>> len(pool), bool((out == 0).all())
        (2, True)
    """

    def __init__(self, size: int = 50, *, seed: int = 0) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size must be an integer >= 0, got {size!r}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape: each image is the input or a stored older one (see module doc)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if float(torch.rand((), generator=self.generator)) > 0.5:
                index = int(torch.randint(0, self.size, (), generator=self.generator))
                old = self.images[index].to(device=image.device, dtype=image.dtype)
                self.images[index] = image.clone()
                out.append(old)
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict[str, Any]:
        """Capacity, stored images (CPU) and the generator state (loadable with ``weights_only=True``)."""
        return {
            "size": self.size,
            "images": [image.detach().cpu() for image in self.images],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"pool size mismatch: state has {state['size']}, this pool {self.size}")
        self.images = [image.clone() for image in state["images"]]
        self.generator.set_state(state["generator"])
