"""One flat hyperparameter record for RL-I2IT registration (paper-vs-code decisions D1-D20).

Every decision of the implementation digest (``shared/research/rl_i2it.md`` section 7) is a field here
with the digest's default; the docstring of each field names its decision. Defaults reproduce the official
SPAC 3D code (section 3.2) except where the digest chose the paper (D2, D6). :func:`smoke_config` is the
tiny CPU configuration of digest section 8.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum


class NetworkPreset(StrEnum):
    """Network size (D10): ``spac`` = official topology, ``vm_budget`` ~ the paper's 107 K / 458 K."""

    SPAC = "spac"
    VM_BUDGET = "vm_budget"
    CUSTOM = "custom"


class Composition(StrEnum):
    """Field composition order (D1): ``code`` = ``a + warp(U, a)``, ``paper`` = ``U + warp(a, U)``."""

    CODE = "code"
    PAPER = "paper"


class RewardKind(StrEnum):
    """Reward (D5): step-wise Dice gain or step-wise SSIM gain."""

    DICE = "dice"
    SSIM = "ssim"


class RewardLabels(StrEnum):
    """Label maps behind the Dice reward (D6)."""

    KMEANS = "kmeans"
    GT = "gt"


class KMeansInit(StrEnum):
    """Initial centroids of the K-means pseudo-labels (D6 extension, see ``RLI2ITConfig.kmeans_init``)."""

    RANGE = "range"
    QUANTILE = "quantile"


class AuxTarget(StrEnum):
    """What the auxiliary registration loss is applied to (D7)."""

    STEP = "step"
    ACCUMULATED = "accumulated"


class Smoothness(StrEnum):
    """Regulariser of the auxiliary loss (D7)."""

    OFFSET_L2 = "offset_l2"
    L2 = "l2"
    DIFFUSION = "diffusion"


class TestStop(StrEnum):
    """Test-time stopping rule (D17 extension, see ``RLI2ITConfig.test_stop``)."""

    NONE = "none"
    SIMILARITY = "similarity"


class Padding(StrEnum):
    """Warp padding (D11)."""

    ZEROS = "zeros"
    BORDER = "border"


class Precision(StrEnum):
    """Autocast dtype of the network forward passes (CUDA only; ``no`` = float32)."""

    NO = "no"
    BF16 = "bf16"


def _choose(value: str, enum: type[StrEnum], name: str) -> StrEnum:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {[m.value for m in enum]}, got {value!r}") from None


@dataclass
class RLI2ITConfig:
    """Hyperparameters of RL-I2IT registration; defaults = digest section 3.2 / section 7 choices.

    Example:
        >>> cfg = RLI2ITConfig(spatial_dims=2)
        >>> cfg.plan_dim, cfg.resolved_ncc_windows
        (64, (9,))
        >>> RLI2ITConfig(gamma=1.5)
        Traceback (most recent call last):
        ...
        ValueError: gamma must lie in [0, 1], got 1.5
    """

    # --- problem and networks ---------------------------------------------------------------
    spatial_dims: int = 3
    """2 or 3; the state has 2 channels (fixed, warped moving), the action ``spatial_dims`` channels."""
    network: str = NetworkPreset.SPAC
    """D10: ``spac`` (official topology, 2.35 M planner+actor in 3D, 0.70 M in 2D), ``vm_budget``
    (narrower, ~107 K in 2D / ~458 K in 3D as the paper reports) or ``custom`` (use ``channels``)."""
    channels: tuple[int, ...] = (16, 32, 32, 64, 64)
    """Encoder widths, one per k4s2 level (``custom`` only; presets set their own)."""
    decoder_channels: tuple[int, ...] | None = None
    """Actor widths: the plan up-sampling block, then one per level from coarse to fine (``custom`` only;
    ``None`` derives ``(c_L, c_L, c_{L-1}, ..., c_2, c_1)``-style widths, see ``networks.default_decoder``)."""
    plan_dim: int = 64
    """Plan dimension d (64 in the 3D code)."""
    logvar_min: float = -10.0
    """Lower bound of the planner's log-variance (tanh rescaling, section 2.1)."""
    logvar_max: float = 2.0
    """Upper bound of the planner's log-variance."""

    # --- environment ------------------------------------------------------------------------
    composition: str = Composition.CODE
    """D1: ``code`` composes ``U <- a + warp(U, a)`` (consistent with the observed state); ``paper`` is
    the literal ``U <- U + warp(a, U)``, kept for ablation only."""
    reward: str = RewardKind.DICE
    """D5: ``dice`` (paper Eq. 14) or ``ssim`` (``SSIM_t - SSIM_{t-1}`` between fixed and warped moving)."""
    reward_labels: str = RewardLabels.KMEANS
    """D6: ``kmeans`` (paper: 3 intensity clusters per image, sorted by centroid) or ``gt`` (SPAC code;
    weakly supervised, report it). Caveat measured on the 2D demo T1w slices: the 3 clusters merge GM and WM
    (cluster 1, Dice 0.85 at identity and nearly flat) and put 4 % of the pixels, bright speckled
    extra-cerebral tissue (mostly GT label 5), in cluster 2 (Dice 0.17), which then dominates the mean
    reward; an agent can raise this reward (0.508 -> 0.564) while the GT Dice of labels 1-3 falls."""
    kmeans_clusters: int = 3
    """D6: number of K-means clusters (label 0 = darkest cluster, scored labels ``1..k-1``)."""
    kmeans_iterations: int = 10
    """D6: Lloyd iterations of the per-image 1-D K-means (deterministic quantile initialisation)."""
    kmeans_init: str = KMeansInit.RANGE
    """D6 extension: ``range`` (default; centroids start evenly spaced between the image's min and max) or
    ``quantile`` (centroid j starts at the ``(j + 1/2) / k`` intensity quantile). On the 2D demo slices ``range``
    puts GM in one cluster with WM (k = 3) or with CSF (k = 4, 5), because a few bright scalp voxels stretch
    the initial range; ``quantile`` with k = 5 gives background, CSF, GM, WM, scalp (Dice to the GT classes
    0.69 / 0.79 / 0.80; see ``kmeans_label_ids``)."""
    kmeans_mask: bool = False
    """D6 extension: cluster only inside the pair's foreground masks (``RegistrationEnv.reset`` then needs
    ``fixed_mask``/``moving_mask``); inside voxels get labels ``1..k`` (1 = darkest), outside ones 0, and all
    k clusters are scored by default. Default: the whole image (paper). The demo cohort's masks are head
    masks (brain, skull, scalp), so on the demo slices they do not isolate CSF/GM/WM (see ``kmeans_init``)."""
    kmeans_label_ids: tuple[int, ...] | None = None
    """D6 extension: K-means labels scored by the reward; ``None`` = ``1..k-1`` (every cluster but the darkest),
    ``1..k`` with ``kmeans_mask``. With k = 5 and ``quantile`` on the demo slices, ``(1, 2, 3)`` = CSF, GM, WM
    without the brightest cluster (scalp)."""
    reward_label_ids: tuple[int, ...] = (1, 2, 3)
    """D6/D15: ground-truth labels scored by the ``gt`` reward; Dice is averaged over those present in
    the fixed label map (D15), so absent ones are skipped."""
    reward_scale: float = 100.0
    """D5: ``k`` in ``r = k (Dice_t - Dice_{t-1})`` (code: 100)."""
    done_threshold: float = 0.98
    """D5: Dice above which an episode terminates (code ``SCORE_THRESHOLD``); > 1 disables termination."""
    bonus: float = 10.0
    """D5: reward added on termination (code +10); 0 turns it off (rewards then telescope exactly)."""
    min_store_dice: float = 0.3
    """D20: only transitions whose new Dice exceeds this are stored in the replay buffer."""
    image_padding: str = Padding.ZEROS
    """D11: padding of image warps (code: grid_sample zeros; intensities in [0, 1], background 0)."""
    field_padding: str = Padding.BORDER
    """D11: padding of the accumulated field inside the composition (medi2i.spatial default: the edge
    displacement; the code pads fields with zeros too)."""
    train_clamp: float = 1.0
    """D9: per-step action clamp in voxels for training rollouts (sampled plan)."""
    test_clamp: float = 3.0
    """D9: per-step action clamp in voxels at test time (mean plan)."""
    train_steps: int = 20
    """Episode length T_train (code ``MAX_EP_STEPS``); the step limit is not terminal (bootstrapped)."""
    test_steps: int = 20
    """D17: fixed number of test steps with the mean plan, no early stopping."""
    test_stop: str = TestStop.NONE
    """D17 extension: ``none`` (digest: always ``test_steps`` steps) or ``similarity``: a pair stops at the first
    step that does not lower its auxiliary similarity loss (the NCC of ``ncc_windows``, on images smoothed by
    ``similarity_sigma``), and that step is not applied. Unsupervised (no labels), so it also runs at inference;
    it keeps an agent that keeps moving after alignment from walking away from it."""

    # --- SAC ----------------------------------------------------------------------------------
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics (targets start as hard copies)."""
    twin_critics: bool = True
    """D4: two critics with ``min`` (code / SAC); ``False`` = the paper's single Q."""
    critic_hidden: tuple[int, ...] = ()
    """Extension (not in the paper or code): widths of hidden layers between the critic's concatenated
    ``[f(s), p]`` and its output. ``()`` = the code's head ``Linear(LeakyReLU([f(s), p]))``, which is additive
    in state and plan: ``dQ/dp_i = v_i`` or ``0.1 v_i`` (the sign of ``p_i`` only), the same for every state,
    so the planner's SAC gradient pushes all plans along one fixed direction and cannot say which plan
    suits which state. Hidden layers (e.g. ``(64, 64)``, the standard SAC MLP critic) let Q model the
    state-plan interaction."""
    log_alpha_init: float = -1.0
    """Initial ``log alpha`` (alpha ~ 0.37, code). The soft target adds ``-alpha log kappa`` at every step, about
    ``alpha * 1.42 d`` for a plan with sigma ~ 1 (d = 24: ~12 per step at 0.37) against rewards of ``100 dDice``
    ~ +-1 per step, and the planner's ``alpha log kappa`` term raises sigma (2.1 of at most 2.7, against 1.0 at
    alpha 0.0025). alpha falls only as fast as ``lr_alpha`` allows (code 4e-5: ~1e5 updates). On short (CPU)
    budgets Q then measures the entropy, not the Dice: on the 2D demo benchmark (200 episodes) Q grew to 37
    while episodes returned about -10, and the agent stayed at the identity. -6 (alpha ~ 0.0025) keeps the
    bonus below the reward; the demo overlay and the committed ``benchmarks/registration.py`` runs use it."""
    target_entropy: float | None = None
    """Target entropy H_target; ``None`` = ``-d / 4`` with d the resolved plan dimension (-16 for d = 64, code)."""
    auto_alpha: bool = True
    """Tune alpha through ``log alpha`` (SAC); ``False`` keeps it at ``exp(log_alpha_init)``."""
    kl_weight: float = 0.01
    """D18: weight of ``KL(N(mu, sigma^2) || N(0, I))`` in the planner and auxiliary losses (code; not in
    the paper). It is the only force against the RL loss on the plan: the critic is ``Linear(LeakyReLU([f(s),
    p]))``, linear/convex in ``p``, so ``-Q`` pushes the plan mean along its weights without bound. The 2D
    demo overlay (``bundles/rl_i2it/demo_cpu.json``) uses 1.0: with 0.01 the demo run reached ``|mu| ~ 10.5``,
    KL ~ 270 and sigma at its bound within 100 episodes, the nearly constant plan made the actor's field state
    independent and Dice fell below the identity (val 0.409 vs 0.550); with 1.0, val 0.511 (helper H-RL,
    ``tests/registration/test_rl_fix_plan_kl.py``)."""
    aux_updates_planner: bool = True
    """D2: the auxiliary loss also steps the planner (paper Eq. 7); ``False`` reproduces SPAC (actor only)."""
    aux_target: str = AuxTarget.STEP
    """D7: ``step`` = loss on the per-step field and the replayed pair (code); ``accumulated`` = on
    ``compose(u, U_{t-1})`` against the original moving image (paper; stores I_M and U_{t-1}). ``step``
    resamples the replayed, already resampled image a second time, which the environment never does; on
    noisy images that extra interpolation blur alone lowers the NCC loss. The 2D demo overlay uses
    ``accumulated`` (measured with kl_weight 1 and window 9: val Dice 0.554 vs identity 0.550)."""
    ncc_windows: tuple[int, ...] | None = None
    """D8: NCC windows per scale; ``None`` = (9, 7, 5) in 3D (code), (9,) in 2D."""
    ncc_weights: tuple[float, ...] | None = None
    """D8: weight per NCC scale; ``None`` = 1, 1/2, 1/4, ..."""
    similarity_sigma: float = 0.0
    """Extension of D8 (not in the paper or code): Gaussian sigma (voxels) applied to the fixed and the
    moving image before the auxiliary NCC (the moving one before it is warped); 0 = off. On noisy images a
    bilinear resampling at a sub-voxel offset averages neighbouring voxels and so lowers the NCC loss by
    itself, which rewards a constant half-voxel shift; after smoothing, one more interpolation barely changes
    the image, so only alignment lowers the loss."""
    drift_weight: float = 0.0
    """Extension (not in the paper or code): weight of ``mean_b |mean_x u_b(x)|^2``, the squared spatial mean of
    the auxiliary loss's per-step field (voxels^2), a penalty on a global translation re-applied at every step;
    0 = off."""
    identity_weight: float = 0.0
    """Extension (not in the paper or code): weight of ``mean |pi(p~, h([F, F]))|^2``, the actor's field (voxels^2)
    for an already aligned state (the fixed image as both channels), a fixed-point term that asks for no
    motion once the images match; 0 = off."""
    smooth_weight: float = 1.0
    """D7: lambda of the smoothness term (code 1.0; the paper gives none)."""
    smoothness: str = Smoothness.OFFSET_L2
    """D7: ``offset_l2`` (code: ``(|forward difference| - offset)^2``), ``l2`` (VoxelMorph) or
    ``diffusion`` (MONAI ``DiffusionLoss``)."""
    smooth_offset: float = 0.01
    """D7: the code's offset of ``offset_l2``."""
    aux_weight: float = 1.0
    """Weight of the auxiliary loss (0 = the paper's "w/o Reg" ablation)."""
    rl_weight: float = 1.0
    """Weight of the planner's RL loss (0 = the paper's "w/o RL" ablation; critics still train)."""

    # --- replay and cadence ---------------------------------------------------------------------
    buffer_capacity: int = 800
    """FIFO capacity (code 800 transitions)."""
    buffer_dtype: str = "float32"
    """D12: storage dtype of images and fields (``float16`` halves the 3D memory)."""
    buffer_device: str | None = None
    """D12: ``None`` = the agent's device; ``"cpu"`` keeps the buffer in (pinned, when CUDA) host memory."""
    batch_size: int = 4
    """Transitions per update (code 4)."""
    warmup_episodes: int = 100
    """D13/D20: episodes of rollouts that only fill the buffer (code ``EP_BOOTSTRAP``)."""
    update_every: int = 8
    """D13: global env steps between critic + auxiliary + target updates (code 8)."""
    planner_every: int = 16
    """D13: global env steps between planner + alpha updates (code 16, a multiple of ``update_every``)."""

    # --- optimisation ---------------------------------------------------------------------------
    lr_actor: float = 4e-5
    """D14: actor learning rate (code base lr)."""
    lr_planner: float = 8e-6
    """D14: planner learning rate (code base/5)."""
    lr_critic: float = 8e-6
    """D14: critic learning rate (code base/5)."""
    lr_alpha: float = 4e-5
    """D14: temperature learning rate."""
    betas: tuple[float, float] = (0.5, 0.9)
    """D14: Adam betas (code)."""
    precision: str = Precision.NO
    """Autocast of network forwards on CUDA (``bf16``; fp16 would need loss scaling per optimiser, not offered);
    ignored on CPU. Losses and the environment stay float32."""
    num_envs: int = 1
    """Pairs rolled out in parallel (code: 1)."""
    seed: int = 100
    """Seed of the run (code 100)."""
    extra: dict = field(default_factory=dict)
    """Free-form notes carried into checkpoints (e.g. D16/D19 reporting choices); not used by the code."""

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        _choose(self.network, NetworkPreset, "network")
        _choose(self.composition, Composition, "composition")
        _choose(self.reward, RewardKind, "reward")
        _choose(self.reward_labels, RewardLabels, "reward_labels")
        _choose(self.aux_target, AuxTarget, "aux_target")
        _choose(self.kmeans_init, KMeansInit, "kmeans_init")
        _choose(self.test_stop, TestStop, "test_stop")
        _choose(self.smoothness, Smoothness, "smoothness")
        _choose(self.image_padding, Padding, "image_padding")
        _choose(self.field_padding, Padding, "field_padding")
        _choose(self.precision, Precision, "precision")
        if self.buffer_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"buffer_dtype must be float32, float16 or bfloat16, got {self.buffer_dtype!r}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive widths, got {self.channels}")
        if self.plan_dim < 1:
            raise ValueError(f"plan_dim must be >= 1, got {self.plan_dim}")
        if any(int(h) < 1 for h in self.critic_hidden):
            raise ValueError(f"critic_hidden must be positive widths, got {self.critic_hidden}")
        if not self.logvar_min < self.logvar_max:
            raise ValueError(f"logvar_min must be < logvar_max, got {self.logvar_min}, {self.logvar_max}")
        if self.kmeans_clusters < 2:
            raise ValueError(f"kmeans_clusters must be >= 2, got {self.kmeans_clusters}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must lie in (0, 1], got {self.tau}")
        for name in ("train_clamp", "test_clamp", "reward_scale", "lr_actor", "lr_planner", "lr_critic"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("train_steps", "test_steps", "buffer_capacity", "batch_size", "update_every", "num_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.planner_every < 1 or self.planner_every % self.update_every:
            raise ValueError(
                f"planner_every must be a positive multiple of update_every={self.update_every}, "
                f"got {self.planner_every}"
            )
        if self.batch_size > self.buffer_capacity:
            raise ValueError(f"batch_size must be <= buffer_capacity={self.buffer_capacity}, got {self.batch_size}")
        if self.warmup_episodes < 0:
            raise ValueError(f"warmup_episodes must be >= 0, got {self.warmup_episodes}")
        windows, weights = self.resolved_ncc_windows, self.resolved_ncc_weights
        if any(w < 1 or w % 2 == 0 for w in windows):
            raise ValueError(f"ncc_windows must be odd positive sizes, got {windows}")
        if len(weights) != len(windows):
            raise ValueError(f"ncc_weights must have one weight per window ({len(windows)}), got {weights}")
        if self.kmeans_label_ids is not None and (
            not self.kmeans_label_ids or any(not 0 <= int(i) <= self.kmeans_clusters for i in self.kmeans_label_ids)
        ):
            raise ValueError(
                f"kmeans_label_ids must be labels in 0..{self.kmeans_clusters}, got {self.kmeans_label_ids}"
            )
        if self.similarity_sigma < 0 or self.drift_weight < 0 or self.identity_weight < 0:
            raise ValueError(
                "similarity_sigma, drift_weight and identity_weight must be >= 0, got "
                f"{self.similarity_sigma}, {self.drift_weight}, {self.identity_weight}"
            )
        if self.smooth_weight < 0 or self.kl_weight < 0 or self.aux_weight < 0 or self.rl_weight < 0:
            raise ValueError("smooth_weight, kl_weight, aux_weight and rl_weight must be >= 0")

    @property
    def resolved_ncc_windows(self) -> tuple[int, ...]:
        """D8: NCC windows (3 scales in 3D, one in 2D unless given)."""
        if self.ncc_windows is not None:
            return tuple(int(w) for w in self.ncc_windows)
        return (9, 7, 5) if self.spatial_dims == 3 else (9,)

    @property
    def resolved_ncc_weights(self) -> tuple[float, ...]:
        """D8: NCC scale weights (1, 1/2, 1/4, ... unless given)."""
        if self.ncc_weights is not None:
            return tuple(float(w) for w in self.ncc_weights)
        return tuple(0.5**i for i in range(len(self.resolved_ncc_windows)))

    def replace(self, **changes: object) -> RLI2ITConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def smoke_config(spatial_dims: int = 2, **changes: object) -> RLI2ITConfig:
    """The tiny CPU configuration of digest section 8.1 (32^2, d = 16, channels 8/16/16).

    Example:
        >>> smoke_config().channels, smoke_config().plan_dim
        ((8, 16, 16), 16)
    """
    base: dict[str, object] = dict(
        spatial_dims=spatial_dims,
        network=NetworkPreset.CUSTOM,
        channels=(8, 16, 16) if spatial_dims == 2 else (4, 8),
        plan_dim=16 if spatial_dims == 2 else 8,
        buffer_capacity=500,
        batch_size=16,
        warmup_episodes=5,
        update_every=2,
        planner_every=4,
        train_steps=5,
        test_steps=8,
        train_clamp=1.0,
        test_clamp=2.0,
        bonus=0.0,
        ncc_windows=(5,),
        lr_actor=1e-3,
        lr_planner=2e-4,
        lr_critic=2e-4,
        lr_alpha=1e-3,
        seed=0,
    )
    base.update(changes)
    return RLI2ITConfig(**base)  # type: ignore[arg-type]
