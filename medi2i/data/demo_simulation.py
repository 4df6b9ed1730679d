"""Simulate one demo subject from the template: deformation, tissues, MR and CT signal, noise.

Recipe (docs/demo_cohort.md). Every random draw comes from three generators derived with
:class:`numpy.random.SeedSequence` from ``(seed, spatial_dims, subject index)`` only, so subject
``k`` is the same whatever the cohort size, and its generating field can be regenerated alone
(:func:`subject_rngs`, :func:`generating_ddf`).

1. **Deformation.** A stationary velocity field (SVF): a cubic B-spline with N(0, 1)
   coefficients on a 6^d control grid, evaluated on a grid at 1/4 resolution, scaled so that its
   largest vector is 3-6 mm, integrated by scaling and squaring (MONAI ``DVF2DDF``, 7 steps). A small affine
   (+-6 deg per axis, +-6 % scale per axis, about the grid centre) is composed *before* it in the
   pull convention of docs/conventions.md: ``u = a + warp(u_svf, a)``, i.e.
   ``subject(x) = template(phi_svf(phi_a(x)))``, whose Jacobian determinant is
   ``det(A) * det(D phi_svf)`` > 0. The composed field is upsampled to full resolution (linear, so
   the affine part stays exact) with its vectors scaled by the grid ratio. Measured over 10
   subjects at 2 mm: Jacobian determinant 0.75-1.30 (3D), 0.75-1.24 (2D).
2. **Tissues.** GM, WM and internal CSF are the warped template fractions. Outside the brain,
   six shells follow the warped signed distance ``d`` to the brain surface, each with a smoothly
   varying thickness: subarachnoid CSF, inner table, diploe, outer table, fat, skin/muscle. Shell
   ``k`` ends at ``d = e_k`` with a partial-volume ramp ``clip(0.5 + (e_k - d) / r, 0, 1)``
   (``r`` = voxel size: the share of a voxel-wide box on the inner side of a flat surface; unlike
   a sigmoid it has no tails, so 1800 HU bone does not leak into CSF two voxels away). Fractions
   are differences of running maxima of those ramps, so all fractions plus background sum to 1.
3. **Signal.** MR: spin echo ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` normalised by white matter;
   T1w uses the real template T1 inside the brain (random gamma 0.9-1.1) plus the model outside;
   T2w is the model minus 0.5 x the real-T1 residual (keeps real texture). CT: fraction-weighted
   HU, air -1000. Tissue parameters (incl. HU) jitter +-5 % per subject.
4. **Artefacts.** Smooth multiplicative bias fields (+-5-10 %) and Rician noise for MR (sigma
   1-3 % of WM for T1w, 2-6 % for T2w); spatially correlated Gaussian CT noise of 3-6 HU.
5. **Labels.** Head mask = background fraction < 0.5; inside it, the label is the arg-max of
   CSF, GM, WM, bone (tables + diploe), scalp soft tissue (fat + skin), numbered 1-5; 0 outside.
   So ``label > 0`` exactly where ``mask == 1``. No label volume is warped (nearest-neighbour
   would be the rule for one): labels come from the warped fractions, so they agree with the
   partial volumes of the images.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF, Warp
from scipy import ndimage as ndi

from medi2i.data.demo_template import DemoTemplate
from medi2i.spatial import compose


@dataclass(frozen=True)
class Tissue:
    """Relaxation times (ms), relative proton density and CT number of one tissue at 3 T.

    ``t2_tse_ms`` is the apparent T2 in a turbo spin echo, longer than the true T2 for fat and
    marrow because the echo train suppresses J-coupling dephasing (why fat is bright in TSE T2w).
    """

    t1_ms: float
    t2_ms: float
    t2_tse_ms: float
    pd: float
    hu: float


# 3 T values; jittered +-5 % per subject. Sources (to check again before quoting in user docs):
# - GM/WM T1 1331/832 ms, T2 110/80 ms: Wansapura et al., JMRI 9:531-538 (1999).
# - CSF T1 ~4300 ms, T2 ~2000 ms: typical in-vivo 3 T values (T1 4200-4500 ms; T2 1500-2300 ms).
# - Subcutaneous fat T1 ~380 ms, T2 ~70 ms: de Bazelaire et al., Radiology 230:652-659 (2004).
# - Skin/muscle T1 ~1400 ms, T2 ~45 ms: skeletal muscle, Stanisz et al., MRM 54:507-512 (2005).
# - PD (water content): WM 0.70, GM 0.80, CSF 1.0, e.g. Neeb et al., NeuroImage 31:1156-1168 (2006).
# - Diploe: fatty marrow + trabecular bone, short T1, low PD; cortical bone: no spin-echo signal.
# - HU: WM 20-30, GM 37-45, CSF 0-15, fat -50..-100, trabecular 300-1000, cortical 1000-2000
#   (Buzug, Computed Tomography, Springer 2008; Prokop & Galanski, Spiral and Multislice CT, 2003).
TISSUES: dict[str, Tissue] = {
    "csf": Tissue(t1_ms=4300.0, t2_ms=2000.0, t2_tse_ms=2000.0, pd=1.00, hu=8.0),
    "gm": Tissue(t1_ms=1331.0, t2_ms=110.0, t2_tse_ms=110.0, pd=0.80, hu=40.0),
    "wm": Tissue(t1_ms=832.0, t2_ms=80.0, t2_tse_ms=80.0, pd=0.70, hu=25.0),
    "fat": Tissue(t1_ms=380.0, t2_ms=70.0, t2_tse_ms=130.0, pd=0.90, hu=-100.0),
    "skin": Tissue(t1_ms=1400.0, t2_ms=45.0, t2_tse_ms=45.0, pd=0.80, hu=45.0),
    "diploe": Tissue(t1_ms=400.0, t2_ms=60.0, t2_tse_ms=110.0, pd=0.50, hu=800.0),
    "cortical_bone": Tissue(t1_ms=1000.0, t2_ms=1.0, t2_tse_ms=1.0, pd=0.0, hu=1800.0),
}
AIR_HU = -1000.0
CT_RANGE_HU = (-1024.0, 3071.0)  # 12-bit scanner range


@dataclass(frozen=True)
class SpinEcho:
    """A spin-echo sequence: repetition and echo time (ms); ``turbo`` selects the TSE apparent T2."""

    tr_ms: float
    te_ms: float
    turbo: bool


SEQUENCES: dict[str, SpinEcho] = {
    "t1w": SpinEcho(tr_ms=500.0, te_ms=12.0, turbo=False),
    "t2w": SpinEcho(tr_ms=5000.0, te_ms=100.0, turbo=True),
}


@dataclass(frozen=True)
class Shell:
    """One extra-cerebral layer: its tissue, the range its mean thickness is drawn from, its spatial SD (mm)."""

    name: str
    tissue: str
    mean_mm: tuple[float, float]
    spatial_sd_mm: float


# From the brain surface outward.
SHELLS: tuple[Shell, ...] = (
    Shell("subarachnoid_csf", "csf", (1.5, 3.0), 0.5),
    Shell("inner_table", "cortical_bone", (2.0, 2.0), 0.3),
    Shell("diploe", "diploe", (2.5, 4.5), 1.0),
    Shell("outer_table", "cortical_bone", (2.0, 2.0), 0.3),
    Shell("fat", "fat", (2.0, 4.0), 1.0),
    Shell("skin", "skin", (2.5, 4.0), 0.5),
)
MIN_SHELL_MM = 0.3

LABELS: dict[int, str] = {0: "background", 1: "csf", 2: "gm", 3: "wm", 4: "bone", 5: "scalp soft tissue"}
LABEL_TISSUES: dict[int, tuple[str, ...]] = {
    1: ("csf",),
    2: ("gm",),
    3: ("wm",),
    4: ("cortical_bone", "diploe"),
    5: ("fat", "skin"),
}

# Deformation recipe.
SVF_CONTROL_POINTS = 6
SVF_MAX_MM = (3.0, 6.0)
SVF_STEPS = 7
FIELD_DOWNSAMPLING = 4  # the SVF and the smooth fields live on a 1/4-resolution grid
AFFINE_MAX_DEG = 6.0
AFFINE_MAX_SCALE = 0.06


@dataclass(frozen=True)
class SimulatedSubject:
    """One subject's volumes, shape ``(X, Y[, Z])``.

    Attributes:
        t1w: T1-weighted, white matter ~1 (float32).
        t2w: T2-weighted, white matter ~1 (float32).
        ct: CT in HU, clipped to [-1024, 3071] (float32).
        mask: head mask (uint8, 0/1).
        label: 0 background, 1 CSF, 2 GM, 3 WM, 4 bone, 5 scalp soft tissue (uint8).
    """

    t1w: np.ndarray
    t2w: np.ndarray
    ct: np.ndarray
    mask: np.ndarray
    label: np.ndarray


def spin_echo_signal(tissue: Tissue, sequence: SpinEcho) -> float:
    """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (T2 -> apparent T2 for a turbo SE).

    Example:
        >>> wm, gm = TISSUES["wm"], TISSUES["gm"]
        >>> round(spin_echo_signal(gm, SEQUENCES["t1w"]) / spin_echo_signal(wm, SEQUENCES["t1w"]), 3)
        0.825
    """
    t2 = tissue.t2_tse_ms if sequence.turbo else tissue.t2_ms
    return float(tissue.pd * (1.0 - np.exp(-sequence.tr_ms / tissue.t1_ms)) * np.exp(-sequence.te_ms / t2))


def subject_rngs(seed: int, index: int, spatial_dims: int) -> tuple[np.random.Generator, ...]:
    """Three independent generators (deformation, anatomy, noise) for one subject.

    They depend on ``(seed, spatial_dims, index)`` only; the deformation stream is separate so the
    generating field can be regenerated without simulating the images.

    Example:
        >>> a = subject_rngs(0, 3, 3)[0].random()
        >>> b = subject_rngs(0, 3, 3)[0].random()
        >>> a == b, a == subject_rngs(0, 4, 3)[0].random()
        (True, False)
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(spatial_dims, index))
    return tuple(np.random.default_rng(child) for child in sequence.spawn(3))


def smooth_random_field(rng: np.random.Generator, channels: int, shape: tuple[int, ...], n_ctrl: int) -> np.ndarray:
    """Smooth random field: cubic B-spline with N(0, 1) coefficients on an ``n_ctrl``-point control grid.

    A B-spline (free-form deformation style) rather than an interpolating spline: the control
    values are coefficients, which smooths them and keeps gradients, hence Jacobians, moderate.
    The control grid spans the field of view corner to corner (mirrored at the ends), so the draw,
    and the field in world units, does not depend on ``shape``.

    Args:
        rng: generator to draw the coefficients from.
        channels: number of independent fields.
        shape: output spatial shape ``(X, Y[, Z])``.
        n_ctrl: control points per axis (>= 2).

    Returns:
        ``(channels, *shape)`` float32.

    Example:
        >>> field = smooth_random_field(np.random.default_rng(0), 2, (16, 12), 4)
        >>> field.shape, field.dtype.name
        ((2, 16, 12), 'float32')
    """
    field = rng.standard_normal((channels,) + (n_ctrl,) * len(shape))
    for axis, size in enumerate(shape, start=1):  # separable: one (size, n_ctrl) basis matrix per axis
        field = np.moveaxis(np.tensordot(_bspline_basis(n_ctrl, size), field, axes=(1, axis)), 0, axis)
    return field.astype(np.float32)


def _bspline_basis(n_ctrl: int, size: int) -> np.ndarray:
    """``(size, n_ctrl)`` cubic B-spline weights; control points at both ends of the axis, mirrored beyond."""
    position = np.linspace(0.0, n_ctrl - 1.0, size)
    basis = np.zeros((size, n_ctrl))
    rows = np.arange(size)
    for offset in (-1, 0, 1, 2):
        index = np.floor(position).astype(int) + offset
        distance = np.abs(position - index)
        weight = np.where(distance < 1, 2 / 3 - distance**2 + distance**3 / 2, np.clip(2 - distance, 0, None) ** 3 / 6)
        mirrored = np.abs(index)
        mirrored = np.where(mirrored > n_ctrl - 1, 2 * (n_ctrl - 1) - mirrored, mirrored)
        np.add.at(basis, (rows, mirrored), weight)
    return basis


def low_resolution_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the 1/4-resolution grid the SVF and smooth fields are built on."""
    return tuple(max(8, size // FIELD_DOWNSAMPLING) for size in shape)


def generating_ddf(rng: np.random.Generator, shape: tuple[int, ...], resolution: float) -> torch.Tensor:
    """Random diffeomorphic pull field: SVF by scaling and squaring, composed after a small affine.

    Args:
        rng: the subject's deformation generator (first of :func:`subject_rngs`).
        shape: spatial shape ``(X, Y[, Z])`` of the subject grid.
        resolution: voxel size in mm (the velocity magnitude and the affine are drawn in world units).

    Returns:
        ``(spatial_dims, *shape)`` float32 displacement in voxels, pull convention:
        ``subject(x) = template(x + u(x))``.

    Example:
        >>> ddf = generating_ddf(np.random.default_rng(0), (32, 40), 2.0)
        >>> tuple(ddf.shape), bool(ddf.abs().max() < 10)
        ((2, 32, 40), True)
    """
    nd = len(shape)
    low = low_resolution_shape(shape)
    ratio = np.array([(s - 1) / (n - 1) for s, n in zip(shape, low, strict=True)])  # full voxels per low voxel
    spacing = resolution * ratio  # mm per low voxel, per axis
    per_axis = (slice(None),) + (None,) * nd

    velocity = smooth_random_field(rng, nd, low, SVF_CONTROL_POINTS).astype(np.float64)
    velocity *= rng.uniform(*SVF_MAX_MM) / np.sqrt((velocity**2).sum(axis=0)).max()  # now in mm
    velocity /= spacing[per_axis]
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # noqa: E731
    svf_ddf = _integrator()(to_tensor(velocity))

    matrix = _rotation(np.deg2rad(rng.uniform(-AFFINE_MAX_DEG, AFFINE_MAX_DEG, 3 if nd == 3 else 1)))
    matrix = matrix @ np.diag(1.0 + rng.uniform(-AFFINE_MAX_SCALE, AFFINE_MAX_SCALE, nd))
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in low], indexing="ij"))
    centred_mm = (grid - ((np.asarray(low) - 1) / 2.0)[per_axis]) * spacing[per_axis]
    affine_ddf = np.einsum("ij,j...->i...", matrix - np.eye(nd), centred_mm) / spacing[per_axis]

    # Pull composition "affine first, then the SVF warp": u = a + u_svf(x + a(x)) (docs/conventions.md).
    total = compose(to_tensor(affine_ddf), svf_ddf)
    mode = "trilinear" if nd == 3 else "bilinear"
    full = F.interpolate(total, size=list(shape), mode=mode, align_corners=True)[0]
    return full * torch.from_numpy(ratio.astype(np.float32)).view(nd, *([1] * nd))


def simulate_subject(template: DemoTemplate, seed: int, index: int) -> SimulatedSubject:
    """Simulate subject ``index`` of the cohort ``seed`` on the template's grid (2D or 3D).

    Args:
        template: the prepared template (3D, or its axial slice for the 2D cohort).
        seed: cohort seed (>= 0).
        index: subject index (>= 0).

    Returns:
        The subject's volumes, shape ``template.shape``.
    """
    shape = template.shape
    nd = len(shape)
    deform_rng, anatomy_rng, noise_rng = subject_rngs(seed, index, nd)
    with torch.no_grad():
        ddf = generating_ddf(deform_rng, shape, template.resolution)
        # All channels in one call: they share the interpolation weights.
        moved = _warp()(torch.from_numpy(template.stack())[None], ddf[None])
    channels = moved[0].numpy()
    t1_real, gm, wm, csf_in = np.clip(channels[:4], 0.0, None)  # bilinear weights keep these >= 0 up to rounding
    sdist = channels[4]

    # Spatial fields: one thickness field per shell and two MR bias fields, drawn at low resolution.
    smooth = _upsample(smooth_random_field(anatomy_rng, len(SHELLS) + 2, low_resolution_shape(shape), 4), shape)
    spatial_axes = tuple(range(1, nd + 1))
    smooth /= smooth.std(axis=spatial_axes, keepdims=True)  # thickness SDs are given for a unit-SD field
    fractions = {"csf": csf_in, "gm": gm, "wm": wm}
    covered = np.clip(gm + wm + csf_in, 0.0, 1.0)  # running maximum of the soft steps, brain first
    edge = np.zeros(shape, np.float32)
    width = template.resolution
    for shell, field in zip(SHELLS, smooth[: len(SHELLS)], strict=True):
        edge = edge + np.maximum(anatomy_rng.uniform(*shell.mean_mm) + shell.spatial_sd_mm * field, MIN_SHELL_MM)
        grown = np.maximum(covered, np.clip(0.5 + (edge - sdist) / width, 0.0, 1.0))
        fractions[shell.tissue] = fractions.get(shell.tissue, 0.0) + (grown - covered)
        covered = grown
    background = 1.0 - covered

    tissues = {name: _jitter(t, anatomy_rng) for name, t in TISSUES.items()}
    signal: dict[str, dict[str, float]] = {}
    for seq, sequence in SEQUENCES.items():  # white matter is the MR reference: its signal is 1 in both contrasts
        reference = spin_echo_signal(tissues["wm"], sequence)
        signal[seq] = {name: spin_echo_signal(t, sequence) / reference for name, t in tissues.items()}
    outside_brain = {name: f for name, f in fractions.items() if name not in ("gm", "wm")}
    outside_brain["csf"] = outside_brain["csf"] - csf_in  # only the subarachnoid shell
    t1_brain = t1_real ** anatomy_rng.uniform(0.9, 1.1)
    model_t1_brain = sum(f * signal["t1w"][name] for name, f in (("gm", gm), ("wm", wm), ("csf", csf_in)))
    t1w = t1_brain + sum(f * signal["t1w"][name] for name, f in outside_brain.items())
    t2w = sum(f * signal["t2w"][name] for name, f in fractions.items()) - 0.5 * (t1_brain - model_t1_brain)
    ct = sum(f * tissues[name].hu for name, f in fractions.items()) + background * AIR_HU

    bias = smooth[len(SHELLS) :] / np.abs(smooth[len(SHELLS) :]).max(axis=spatial_axes, keepdims=True)
    t1w = _rician(t1w * np.exp(anatomy_rng.uniform(0.05, 0.10) * bias[0]), anatomy_rng.uniform(0.01, 0.03), noise_rng)
    t2w = np.clip(t2w, 0.0, None) * np.exp(anatomy_rng.uniform(0.05, 0.10) * bias[1])
    t2w = _rician(t2w, anatomy_rng.uniform(0.02, 0.06), noise_rng)
    ct_noise = ndi.gaussian_filter(noise_rng.standard_normal(shape, dtype=np.float32), 0.7)
    ct = ct + ct_noise * (anatomy_rng.uniform(3.0, 6.0) / ct_noise.std())
    ct = np.clip(ct, *CT_RANGE_HU)

    mask = background < 0.5
    classes = np.stack([sum(fractions[t] for t in LABEL_TISSUES[k]) for k in sorted(LABEL_TISSUES)])
    label = np.where(mask, classes.argmax(axis=0) + 1, 0)
    return SimulatedSubject(
        t1w=t1w.astype(np.float32),
        t2w=t2w.astype(np.float32),
        ct=ct.astype(np.float32),
        mask=mask.astype(np.uint8),
        label=label.astype(np.uint8),
    )


@functools.lru_cache(maxsize=1)
def _warp() -> Warp:
    """Bilinear warp with border padding (a field or an image extends its edge values beyond the grid)."""
    with warnings.catch_warnings():  # MONAI notes once per layer that it uses torch's grid_sample: intended here
        warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample")
        return Warp(mode="bilinear", padding_mode="border")


@functools.lru_cache(maxsize=1)
def _integrator() -> DVF2DDF:
    """Scaling and squaring of a stationary velocity field, 7 steps (field / 2^7, then 7 self-compositions)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample")
        return DVF2DDF(num_steps=SVF_STEPS, mode="bilinear", padding_mode="border")


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix: one angle (2D) or angles about x, y, z applied in that order (3D)."""
    cos, sin = np.cos(angles), np.sin(angles)
    if angles.size == 1:
        return np.array([[cos[0], -sin[0]], [sin[0], cos[0]]])
    rx = np.array([[1, 0, 0], [0, cos[0], -sin[0]], [0, sin[0], cos[0]]])
    ry = np.array([[cos[1], 0, sin[1]], [0, 1, 0], [-sin[1], 0, cos[1]]])
    rz = np.array([[cos[2], -sin[2], 0], [sin[2], cos[2], 0], [0, 0, 1]])
    return rz @ ry @ rx


def _upsample(fields_low: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    out = F.interpolate(torch.from_numpy(fields_low)[None], size=list(shape), mode=mode, align_corners=True)
    return out[0].numpy()


def _jitter(tissue: Tissue, rng: np.random.Generator) -> Tissue:
    return replace(tissue, **{f.name: getattr(tissue, f.name) * rng.uniform(0.95, 1.05) for f in fields(tissue)})


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the complex signal with Gaussian noise of SD ``sigma`` in both channels."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real**2 + imag**2)
