"""Explicit, labelled stand-ins that let the QA notebooks and tests run before any model is trained.

Neither is a method of this project, and neither should be reported as one:

* :class:`TissueIntensityMap` - a **baseline**, not a model: per tissue label ``k``, the target
  intensity is fitted as ``a_k * source + b_k`` by least squares over training subjects, then
  applied voxel-wise using the test subject's *label map* (information a real synthesis model does
  not get). It gives a plausible "synthesis" with realistic tissue-dependent errors.
* :func:`demo_pair_ddf` - the **known generating deformations** of the demo cohort composed into a
  fixed <- moving pull field (``phi_j^-1 o phi_i - id``; :func:`medi2i.data.demo.subject_ddf`), i.e. an
  oracle registration of the brain, available only because the cohort is simulated.

Example:
    >>> src = np.array([[1.0, 2.0], [3.0, 4.0]]); lab = np.array([[1, 1], [2, 2]])
    >>> tmap = TissueIntensityMap.fit([src], [2 * src + 1], [lab])
    >>> tmap.predict(src, lab).tolist()
    [[3.0, 5.0], [7.0, 9.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["TissueIntensityMap", "demo_pair_ddf", "invert_ddf"]


@dataclass
class TissueIntensityMap:
    """Per-tissue linear intensity mapping ``target = a_k * source + b_k`` (a baseline, not a model).

    Attributes:
        coefficients: ``{label: (a_k, b_k)}``.
        fallback: value for labels not seen in training (mean training target).
    """

    coefficients: dict[int, tuple[float, float]] = field(default_factory=dict)
    fallback: float = 0.0

    @classmethod
    def fit(
        cls, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], labels: Sequence[np.ndarray]
    ) -> TissueIntensityMap:
        """Least-squares fit of ``(a_k, b_k)`` per label over all training voxels.

        Args:
            sources: source images (any shape each).
            targets: target images, same shapes.
            labels: integer label maps, same shapes (label 0 = background is fitted too).

        Raises:
            ValueError: empty input, unequal counts or shapes.
        """
        if not sources or not (len(sources) == len(targets) == len(labels)):
            raise ValueError(
                f"need equal, non-zero numbers of sources, targets, labels; got {len(sources)}, {len(targets)}, "
                f"{len(labels)}"
            )
        for s, t, lab in zip(sources, targets, labels, strict=True):
            if not np.shape(s) == np.shape(t) == np.shape(lab):
                raise ValueError(f"shapes differ: {np.shape(s)}, {np.shape(t)}, {np.shape(lab)}")
        src = np.concatenate([np.ravel(s) for s in sources]).astype(np.float64)
        tgt = np.concatenate([np.ravel(t) for t in targets]).astype(np.float64)
        lab = np.concatenate([np.ravel(x) for x in labels]).astype(np.int64)
        coefficients = {}
        for k in np.unique(lab):
            sel = lab == k
            design = np.stack([src[sel], np.ones(sel.sum())], axis=1)
            (a, b), *_ = np.linalg.lstsq(design, tgt[sel], rcond=None)
            coefficients[int(k)] = (float(a), float(b))
        return cls(coefficients, float(tgt.mean()))

    def predict(self, source: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Apply the mapping voxel-wise; returns float32 of ``source``'s shape."""
        if np.shape(source) != np.shape(label):
            raise ValueError(f"source and label shapes differ: {np.shape(source)} and {np.shape(label)}")
        source = np.asarray(source, np.float64)
        out = np.full(source.shape, self.fallback)
        for k, (a, b) in self.coefficients.items():
            sel = np.asarray(label) == k
            out[sel] = a * source[sel] + b
        return out.astype(np.float32)


def invert_ddf(ddf: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Approximate inverse of a smooth pull displacement by fixed-point iteration ``v = -u(x + v(x))``.

    ``x + v(x)`` then undoes ``x + u(x)``: ``u(x + v(x)) + v(x) = 0``. Converges for fields whose
    Jacobian of ``u`` has norm below 1 (no folds), which holds for the demo's smooth fields.

    Args:
        ddf: ``(n, *spatial)`` voxel units.
        iterations: fixed-point steps.

    Returns:
        ``(n, *spatial)`` float32.

    Example:
        >>> u = np.full((2, 6, 6), 0.5, np.float32)  # a constant shift inverts to minus itself
        >>> bool(np.allclose(invert_ddf(u), -0.5))
        True
    """
    from medi2i.spatial import warp

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    u = torch.as_tensor(np.asarray(ddf, np.float32))[None]
    v = -u.clone()
    for _ in range(iterations):
        v = -warp(u, v)
    return v[0].numpy()


def demo_pair_ddf(
    fixed_index: int, moving_index: int, *, seed: int = 0, spatial_dims: int = 3, resolution: float = 2.0
) -> np.ndarray:
    """Oracle fixed <- moving pull field of two demo subjects from their known generating fields.

    Subject ``s`` is ``template(x + u_s(x))``; the moving subject aligns with the fixed one under
    ``d(x) = u_i(x) + v_j(x + u_i(x))`` with ``v_j`` the inverse of ``u_j`` (:func:`invert_ddf`), i.e.
    ``medi2i.spatial.compose(u_i, v_j)``. Brain tissue follows it; skull and scalp shells, drawn per
    subject, only approximately.

    Args:
        fixed_index: fixed subject index ``i``.
        moving_index: moving subject index ``j``.
        seed: the cohort seed (``cohort.json``).
        spatial_dims: 3 (volumes) or 2 (axial-slice cohort).
        resolution: the cohort's voxel size in mm.

    Returns:
        ``(spatial_dims, *spatial)`` float32, voxel units, on the fixed grid.
    """
    from medi2i.data.demo import subject_ddf
    from medi2i.spatial import compose

    u_i = subject_ddf(seed, fixed_index, spatial_dims=spatial_dims, resolution=resolution)
    v_j = invert_ddf(subject_ddf(seed, moving_index, spatial_dims=spatial_dims, resolution=resolution))
    return compose(torch.as_tensor(u_i)[None], torch.as_tensor(v_j)[None])[0].numpy()
