"""medi2i.natural benchmark: seconds per training iteration / per stylised image and peak memory per method.

Adversarial methods (``cyclegan``, ``cut``, ``fastcut``, ``sincut``, ``spade``, ``sae``, ``rabit``): each is built
from its class with the official code's architecture (full width unless ``--width`` < 1), then
``setup_lazy(batch)``, ``configure_optimizers()`` and ``training_step(batch, optimizers, step)`` are called directly
on one synthetic batch with the method's keys (``"A"``/``"B"``; ``"label"``/``"image"``; RABIT also
``"exemplar"``/``"exemplar_label"``), at the official per-GPU batch size. ``--warmup`` iterations are run first and
excluded; the reported s/it is the median wall time of ``--iterations`` timed iterations (CUDA synchronised).

Baseline in the same run, per method: the method's generator alone (same batch, same input tensors) with an L1
loss to the target image, one backward and one Adam step, i.e. what a plain supervised step of that generator
costs; the ratio column shows the method's overhead (discriminators, second generator, PatchNCE, VGG losses,
attention...).

Style methods (``dtp``, ``nst``): :func:`medi2i.natural.stylize.make_stylizer` with ``pretrained=False``: a
randomly initialised full-width VGG19 (timing and memory do not depend on the weights' values; no weights file
is needed). Reported: seconds per optimisation iteration (DTP iteration; NST L-BFGS closure evaluation), and the
seconds per stylised image projected to the default schedule (DTP 1000 iterations, NST 25 L-BFGS steps x 20 =
at most 500 evaluations). Baseline: one forward + backward of the same VGG19 to its input (the core of one NST
evaluation).

Memory: CUDA ``torch.cuda.max_memory_allocated`` above the level before the method is built (weights, gradients,
optimiser states, activations; ``max_memory_reserved`` is reported too). CPU: the peak of the process's anonymous
resident memory (``RssAnon`` in ``/proc/self/status``, sampled every 2 ms by a thread) above its level before the
method is built; anonymous memory is used because total RSS also grows by the shared libraries' code pages that
the first call of each kernel faults in (hundreds of MB for libtorch), which are not the method's memory.
``psutil`` is not used (not a dependency); ``tracemalloc`` cannot see tensor memory (C++ allocator). Each
measurement runs in a fresh process (``spawn``) so that allocator caches of one method do not hide the next one's
memory; ``--in-process`` (tests, debugging) skips that and its numbers depend on the order of the runs.

Official figures shown beside ours come from the research digests (park_thesis.md, dtp_rabit_nst.md): CUT
paper Table 3.6 (GTX 1080Ti, 256 px, batch 1; CycleGAN 0.40 s/it 4.81 GB, CUT 0.24 s/it 3.33 GB, FastCUT
0.15 s/it 2.25 GB), DTP (~150 s and ~6 GB per 256 px pair of 1000 iterations on an RTX 3090), RABIT (Table 7
memory, DeepFashion), SPADE and SAE (no per-iteration figures; notes only).

Usage::

    # CPU, reduced size (what benchmarks/results/natural_cpu.md was made with)
    OMP_NUM_THREADS=1 python benchmarks/natural.py --device cpu --size 64 --threads 1 \\
        --out benchmarks/results/natural_cpu.md
    # GPU, the official 256 px setting
    python benchmarks/natural.py --device cuda --size 256 --out benchmarks/results/natural_gpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from _bench_common import machine  # noqa: E402

ADVERSARIAL = ("cyclegan", "cut", "fastcut", "sincut", "spade", "sae", "rabit")
STYLE = ("dtp", "nst")
ALL_METHODS = ADVERSARIAL + STYLE

# Official per-GPU batch sizes (digests): CycleGAN/CUT/FastCUT batch 1; SinCUT 16 crops; SPADE 32 on 8 GPUs;
# SAE 64 at 256 px on 8 GPUs; RABIT ADE20K batch 3 on one GPU.
OFFICIAL_BATCH = {"cyclegan": 1, "cut": 1, "fastcut": 1, "sincut": 16, "spade": 4, "sae": 8, "rabit": 3}

# Official schedule per stylised image (iterations / evaluations) used for the projection.
STYLE_SCHEDULE = {"dtp": 1000, "nst": 500}

SAMPLE_S = 0.002  # CPU memory sampling interval (seconds)


@dataclass(frozen=True)
class Official:
    s_per_it: str
    memory: str
    source: str


OFFICIAL: dict[str, Official] = {
    "cyclegan": Official("0.40", "4.81 GB", "CUT Table 3.6: GTX 1080Ti, 256 px, batch 1 (park_thesis.md 3.4/4.4)"),
    "cut": Official("0.24", "3.33 GB", "CUT Table 3.6: GTX 1080Ti, 256 px, batch 1 (park_thesis.md 4.4)"),
    "fastcut": Official("0.15", "2.25 GB", "CUT Table 3.6: GTX 1080Ti, 256 px, batch 1 (park_thesis.md 4.4)"),
    "sincut": Official("-", "-", "not reported"),
    "spade": Official(
        "-", "-", "not reported; users: about 12 images per 32 GB V100 at ADE20K 256 px (NVlabs/SPADE #88)"
    ),
    "sae": Official(
        "-", "-", "not per iteration: 25M images in 14 days on 4 V100 at 256 px (LSUN Church, code README)"
    ),
    "rabit": Official("-", "16.35 GB", "Table 7 (DeepFashion, 128² correspondence, k=3, b=4); runtime not reported"),
    "dtp": Official("~0.15 s/it, ~150 s/image", "~6 GB", "paper: 1000 iterations at 256 px on one RTX 3090"),
    "nst": Official("-", "-", "not reported (seconds to minutes per 512 px image on a GPU)"),
}


# ----------------------------------------------------------------------------------------------- memory / timing
def _anon_rss_bytes() -> int:
    """Anonymous resident memory (``RssAnon``: heap, tensors; not the shared libraries' code pages, which the
    first call of each kernel faults in and which would otherwise count as the first method's memory)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    with open("/proc/self/statm") as f:  # pragma: no cover - kernels without RssAnon: total RSS
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the level at ``__enter__``: CUDA allocator peak, or sampled anonymous RSS (CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self.reserved_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = self._peak = _anon_rss_bytes()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(SAMPLE_S):
                self._peak = max(self._peak, _anon_rss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            self.reserved_mb = torch.cuda.max_memory_reserved(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = (max(self._peak, _anon_rss_bytes()) - self._base) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[int], Any], warmup: int, iterations: int, device: torch.device) -> dict[str, float]:
    """Run ``fn(step)`` ``warmup`` times untimed, then ``iterations`` times; median wall and mean CPU seconds."""
    for step in range(warmup):
        fn(step)
    _sync(device)
    walls = []
    cpu0 = time.process_time()
    for step in range(warmup, warmup + iterations):
        t0 = time.perf_counter()
        fn(step)
        _sync(device)
        walls.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / iterations
    return {"s_per_it": statistics.median(walls), "s_per_it_min": min(walls), "cpu_s_per_it": cpu}


# ----------------------------------------------------------------------------------------------- synthetic data
def _images(batch: int, channels: int, size: int, device: torch.device) -> torch.Tensor:
    return (torch.rand(batch, channels, size, size, device=device) * 2 - 1).contiguous()


def _labels(batch: int, num_classes: int, size: int, device: torch.device) -> torch.Tensor:
    """Blocky integer label maps ``(B, 1, H, W)`` int64 (random 8x8 class grid, nearest-upsampled)."""
    coarse = torch.randint(0, num_classes, (batch, 1, 8, 8), device=device).float()
    return F.interpolate(coarse, size=(size, size), mode="nearest").long()


# ----------------------------------------------------------------------------------------------- method builders
@dataclass
class Setup:
    method: Any  # AdversarialMethod
    batch: dict[str, torch.Tensor]
    generator: Callable[[], torch.Tensor]  # the baseline forward (same inputs)
    generator_params: Callable[[], list[torch.nn.Parameter]]
    target: torch.Tensor
    summary: str


def _w(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def build(name: str, *, size: int, batch: int, num_classes: int, width: float, device: torch.device) -> Setup:
    """Build method ``name`` at ``size`` px (official architecture scaled by ``width``) and its synthetic batch."""
    torch.manual_seed(0)
    if name == "cyclegan":
        from medi2i.natural.cyclegan import CycleGAN

        m = CycleGAN(in_channels=3, out_channels=3, ngf=_w(64, width), ndf=_w(64, width), n_blocks=9).to(device)
        data = {"A": _images(batch, 3, size, device), "B": _images(batch, 3, size, device)}
        return Setup(
            m,
            data,
            lambda: m.G_A(data["A"]),
            lambda: list(m.G_A.parameters()),
            data["B"],
            f"ResNet-9 G x2 (ngf {_w(64, width)}), PatchGAN x2, pool 50",
        )
    if name in ("cut", "fastcut", "sincut"):
        from medi2i.natural.cut import CUT, FastCUT, SinCUT

        cls = {"cut": CUT, "fastcut": FastCUT, "sincut": SinCUT}[name]
        m = cls(3, 3, ngf=_w(64, width), ndf=_w(64, width), mlp_channels=_w(256, width)).to(device)
        crop = size // 4 if name == "sincut" else size  # SinCUT: the code's 64 px crops at 256 px
        data = {"A": _images(batch, 3, crop, device), "B": _images(batch, 3, crop, device)}
        blocks = {"sincut": "ResNet-6, 1 down"}.get(name, "ResNet-9")
        return Setup(
            m,
            data,
            lambda: m.G(data["A"]),
            lambda: list(m.G.parameters()),
            data["B"],
            f"{blocks} G (ngf {_w(64, width)}), PatchGAN, MLP {_w(256, width)}"
            + (f"; {crop} px crops" if name == "sincut" else ""),
        )
    if name == "spade":
        from medi2i.natural.spade import SPADE
        from medi2i.natural.spade_networks import one_hot_labels

        m = SPADE(
            num_classes,
            3,
            crop_size=size,
            nf=_w(64, width),
            hidden_channels=_w(128, width),
            ndf=_w(64, width),
            vgg_pretrained=False,
            vgg_width=width,
        ).to(device)
        data = {"label": _labels(batch, num_classes, size, device), "image": _images(batch, 3, size, device)}
        onehot = one_hot_labels(data["label"], num_classes)
        return Setup(
            m,
            data,
            lambda: m.G(onehot),
            lambda: list(m.G.parameters()),
            data["image"],
            f"SPADE G (nf {_w(64, width)}, {num_classes} classes), 2-scale D, VGG19 loss (random)",
        )
    if name == "sae":
        from medi2i.natural.sae import SwappingAutoencoder
        from medi2i.natural.sae_networks import stylegan2_channels

        kw: dict[str, Any] = {}
        if width != 1.0:
            kw = dict(
                encoder_channels=[_w(c, width) for c in (32, 64, 128, 256, 512)],
                texture_channels=[_w(c, width) for c in (1024, 2048)],
                texture_dim=_w(2048, width),
                generator_base_channels=[_w(c, width) for c in (256, 512)],
                generator_up_channels=[_w(c, width) for c in (512, 512, 256, 128)],
                patch_channels=[_w(c, width) for c in (64, 128, 256, 384, 384, 384)],
                patch_hidden=[_w(c, width) for c in (2048, 2048, 1024)],
                discriminator_channels=[_w(c, width) for c in stylegan2_channels(size)],
            )
        # the code's 128 px co-occurrence patches at 256 px; at smaller sizes half the side, with as many of
        # D_patch's 5 downsampling blocks as leave >= 4 px for its valid conv
        patch = size // 2
        n_down = next(n for n in range(5, 0, -1) if patch % 2**n == 0 and patch // 2**n >= 4)
        patch_channels = kw.get("patch_channels", [64, 128, 256, 384, 384, 384])[: n_down + 1]
        kw["patch_channels"] = patch_channels
        # the code's "valid" texture convs need >= 7 px at the 1/16 code resolution (112 px images)
        reflect = size // 16 < 7
        if reflect:
            kw["texture_padding"] = "reflect"
        m = SwappingAutoencoder(3, size, patch_size=patch, **kw).to(device)
        data = {"A": _images(batch, 3, size, device)}

        def sae_forward() -> torch.Tensor:
            return m.G(*m.E(data["A"]))

        return Setup(
            m,
            data,
            sae_forward,
            lambda: [*m.E.parameters(), *m.G.parameters()],
            data["A"],
            f"E + modulated G (width x{width:g}), image D + co-occurrence D ({patch} px patches, {n_down} down)"
            + ("; reflect-padded texture convs" if reflect else ""),
        )
    if name == "rabit":
        from medi2i.natural.rabit import RABIT
        from medi2i.natural.spade_networks import one_hot_labels

        m = RABIT(
            num_classes,
            3,
            ndf=_w(64, width),
            corr_channels=_w(256, width),
            ngf=_w(64, width),
            spade_hidden=_w(128, width),
            ndf_d=_w(64, width),
            vgg_pretrained=False,
            vgg_width=width,
        ).to(device)
        data = {
            "label": _labels(batch, num_classes, size, device),
            "image": _images(batch, 3, size, device),
            "exemplar": _images(batch, 3, size, device),
            "exemplar_label": _labels(batch, num_classes, size, device),
        }
        onehot = one_hot_labels(data["label"], num_classes).float()
        ex_onehot = one_hot_labels(data["exemplar_label"], num_classes).float()
        return Setup(
            m,
            data,
            lambda: m.translator(onehot, data["exemplar"], ex_onehot).image,
            lambda: list(m.translator.parameters()),
            data["image"],
            f"RAS k=3 b=2x2, correspondence {size // 2}², {num_classes} classes, VGG19 losses (random)",
        )
    raise ValueError(f"method={name!r}; allowed: {list(ALL_METHODS)}")


# ----------------------------------------------------------------------------------------------- measurements
def measure_adversarial(name: str, args: argparse.Namespace, *, baseline: bool) -> dict[str, Any]:
    """One method's training iteration (``baseline=False``) or its generator-only L1 step (``baseline=True``)."""
    device = torch.device(args.device)
    batch = args.batch_override.get(name, args.batch or OFFICIAL_BATCH[name])
    with PeakMemory(device) as memory:
        s = build(name, size=args.size, batch=batch, num_classes=args.num_classes, width=args.width, device=device)
        s.method.train()
        if baseline:
            params = s.generator_params()
            opt = torch.optim.Adam(params, lr=1e-4)

            def step(_: int) -> None:
                opt.zero_grad(set_to_none=True)
                F.l1_loss(s.generator(), s.target).backward()
                opt.step()

            n_params = sum(p.numel() for p in params)
        else:
            s.method.setup_lazy(s.batch)
            optimizers = s.method.configure_optimizers()

            def step(i: int) -> None:
                s.method.training_step(s.batch, optimizers, i)

            n_params = sum(p.numel() for p in s.method.parameters())
        timing = _timed(step, args.warmup, args.iterations, device)
    return {
        "method": name,
        "baseline": baseline,
        "batch": batch,
        "input": tuple(next(iter(s.batch.values())).shape[-2:]),
        "params": n_params,
        "summary": s.summary,
        "peak_mb": memory.peak_mb,
        "reserved_mb": memory.reserved_mb,
        **timing,
    }


def measure_style(name: str, args: argparse.Namespace, *, baseline: bool) -> dict[str, Any]:
    """DTP / NST seconds per iteration (or the VGG19 forward+backward baseline) at ``args.size``."""
    from medi2i.natural.stylize import make_stylizer

    device = torch.device(args.device)
    torch.manual_seed(0)
    content = torch.rand(3, args.size, args.size) * 2 - 1
    style = torch.rand(3, args.size, args.size) * 2 - 1
    n = max(2, args.style_iterations)
    with PeakMemory(device) as memory:
        if baseline:
            from medi2i.nets.vgg import VGGFeatures

            vgg = VGGFeatures(
                "vgg19",
                layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"),
                pretrained=False,
                width=args.width,
                input_range="[-1,1]",
            ).to(device)
            vgg.requires_grad_(False)
            x = content[None].to(device).requires_grad_(True)

            def step(_: int) -> None:
                x.grad = None
                sum(f.mean() for f in vgg(x).values()).backward()

            timing = _timed(step, args.warmup, args.iterations, device)
            per_it = timing["s_per_it"]
            row = {"iterations": 1, "s_per_image": None}
        else:
            common = dict(pretrained=False, vgg_width=args.width, device=str(device))
            if name == "nst":
                # L-BFGS as the default; one step of n inner iterations -> about n closure evaluations
                warm = make_stylizer("nst", steps=1, lbfgs_max_iter=max(1, args.warmup), **common)
                stylizer = make_stylizer("nst", steps=1, lbfgs_max_iter=n, **common)
            else:
                warm = make_stylizer("dtp", steps=max(1, args.warmup), record_every=10**9, **common)
                stylizer = make_stylizer("dtp", steps=n, record_every=10**9, **common)
            if args.warmup:
                warm(content, style)
            _sync(device)
            cpu0 = time.process_time()
            _, report = stylizer(content, style)
            _sync(device)
            count = report.get("evaluations", report.get("iterations", n))
            per_it = report["seconds"] / count
            timing = {"s_per_it": per_it, "s_per_it_min": per_it, "cpu_s_per_it": (time.process_time() - cpu0) / count}
            # projected per-image time: wall on CUDA, CPU time on CPU (wall on a shared machine includes waiting)
            basis = timing["s_per_it"] if device.type == "cuda" else timing["cpu_s_per_it"]
            row = {"iterations": count, "s_per_image": basis * STYLE_SCHEDULE[name]}
    return {
        "method": name,
        "baseline": baseline,
        "batch": 1,
        "input": (args.size, args.size),
        "params": None,
        "summary": "VGG19 fwd+bwd to the input" if baseline else "",
        "peak_mb": memory.peak_mb,
        "reserved_mb": memory.reserved_mb,
        **timing,
        **row,
    }


def _measure(name: str, args: argparse.Namespace, baseline: bool) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    fn = measure_style if name in STYLE else measure_adversarial
    return fn(name, args, baseline=baseline)


def _child(name: str, args: argparse.Namespace, baseline: bool, queue: Any) -> None:
    try:
        queue.put(_measure(name, args, baseline))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which records the failure
        queue.put({"method": name, "baseline": baseline, "error": f"{type(err).__name__}: {err}"})


def run_one(name: str, args: argparse.Namespace, baseline: bool) -> dict[str, Any]:
    """Measure in a fresh spawned process (default) or in this one (``--in-process``)."""
    if args.in_process:
        try:
            return _measure(name, args, baseline)
        except Exception as err:  # noqa: BLE001
            return {"method": name, "baseline": baseline, "error": f"{type(err).__name__}: {err}"}
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, args, baseline, queue))
    proc.start()
    try:
        result = queue.get(timeout=args.timeout)
    except Exception:  # noqa: BLE001 - queue.Empty: timed out
        proc.kill()
        result = {"method": name, "baseline": baseline, "error": f"no result within {args.timeout} s"}
    proc.join()
    return result


# ----------------------------------------------------------------------------------------------- report
def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits (seconds) or, with ``digits=0``, a rounded integer (MB)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if digits == 0 or abs(value) >= 10**digits else f"{value:.{digits}g}"


def write_table(path: Path, rows: list[dict], baselines: dict[str, dict], args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        mem = (
            "CUDA max_memory_allocated above the level before the build "
            "(MB; weights, gradients, optimiser states, activations)"
        )
    else:
        mem = (
            f"peak anonymous RSS (RssAnon, sampled every {SAMPLE_S * 1000:g} ms) above the level before the build "
            "(MB; weights, gradients, optimiser states, activations, allocator caches; shared-library code pages "
            "excluded), " + ("in-process: order-dependent" if args.in_process else "a fresh process per row")
        )
    ours_gpu = "this code, GPU 256 px (s/it)"
    # ratios from CPU time on CPU (wall time on a shared machine includes waiting for a core), wall time on CUDA
    key = "s_per_it" if cuda else "cpu_s_per_it"
    base_label = "baseline s/it" if cuda else "baseline CPU s/it"
    lines = [
        "# medi2i.natural benchmark: training s/iteration, s/stylised image and peak memory",
        "",
        f"Machine: {machine(device)}. Device: {device.type}, fp32.",
        "",
        f"Command: `{' '.join(args.command)}` (started {args.started}).",
        "",
        f"Size {args.size} px (SinCUT: {args.size // 4} px crops, the code's 64 px at 256), network width "
        f"x{args.width:g} of the official architectures, {args.num_classes} label classes (ADE20K) for SPADE and "
        f"RABIT, synthetic batches (random images in [-1, 1], blocky random label maps), official per-GPU batch "
        f"sizes unless `--batch`/`--batch-override` (the batch column). Warm-up {args.warmup} iteration(s) "
        f"excluded; s/it = median wall time of "
        f"{args.iterations} timed iterations (CPU s/it: process CPU time per iteration, all threads). Peak memory: "
        f"{mem}. VGG19 loss networks are randomly initialised (`pretrained=False`): timing and memory do not "
        "depend on the weights' values.",
        "",
        "## Adversarial methods: one training iteration",
        "",
        "Baseline (same run, same batch): the method's generator alone, forward + L1 to the target + backward + "
        "Adam step. The ratio is method ÷ baseline in CPU time on CPU (wall time on CUDA). Official figures are "
        "GPU numbers at 256 px from the papers (see the source column).",
        "",
        f"| method | networks | batch | input | params (M) | s/it | CPU s/it | peak MB | {base_label} | "
        f"baseline MB | s/it ÷ baseline | {ours_gpu} | official s/it | official memory | official source |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["method"] not in ADVERSARIAL:
            continue
        o = OFFICIAL[r["method"]]
        if "error" in r:
            lines.append(
                f"| {r['method']} | FAILED: {r['error']} | | | | | | | | | | | {o.s_per_it} | {o.memory} | {o.source} |"
            )
            continue
        b = baselines.get(r["method"], {})
        ratio = r[key] / b[key] if b.get(key) else None
        gpu = _fmt(r["s_per_it"]) if cuda else "-"
        lines.append(
            f"| {r['method']} | {r['summary']} | {r['batch']} | {r['input'][0]}x{r['input'][1]} | "
            f"{r['params'] / 1e6:.1f} | {_fmt(r['s_per_it'])} | {_fmt(r['cpu_s_per_it'])} | {r['peak_mb']:.0f} | "
            f"{_fmt(b.get(key))} | {_fmt(b.get('peak_mb'), 0)} | {_ratio(ratio)} | {gpu} | {o.s_per_it} | "
            f"{o.memory} | {o.source} |"
        )
    if any(r["method"] in STYLE for r in rows):
        lines += [
            "",
            "## Per-pair style transfer: one optimisation iteration",
            "",
            f"DTP: one test-time iteration (3 encoder passes, correspondence, decoder, losses, 2 Adam steps); NST: "
            "one L-BFGS closure evaluation. s/image = s/iteration (CPU s/iteration on CPU) x the default schedule "
            f"(DTP "
            f"{STYLE_SCHEDULE['dtp']} iterations; NST 25 L-BFGS steps x 20 = at most {STYLE_SCHEDULE['nst']} "
            f"evaluations), projected from {args.style_iterations} timed iterations of one call (its fixed setup "
            "included). Baseline: one forward + backward of the same VGG19 to its input.",
            "",
            f"| method | input | s/iteration | CPU s/iteration | s/image (projected) | peak MB | {base_label} | "
            f"baseline MB | s/iteration ÷ baseline | {ours_gpu} | official | official memory | official source |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
        ]
        for r in rows:
            if r["method"] not in STYLE:
                continue
            o = OFFICIAL[r["method"]]
            if "error" in r:
                lines.append(
                    f"| {r['method']} | FAILED: {r['error']} | | | | | | | | | {o.s_per_it} | {o.memory} | {o.source} |"
                )
                continue
            b = baselines.get(r["method"], {})
            ratio = r[key] / b[key] if b.get(key) else None
            gpu = _fmt(r["s_per_it"]) if cuda else "-"
            lines.append(
                f"| {r['method']} | {r['input'][0]}x{r['input'][1]} | {_fmt(r['s_per_it'])} | "
                f"{_fmt(r['cpu_s_per_it'])} | {_fmt(r['s_per_image'], 3)} | {r['peak_mb']:.0f} | "
                f"{_fmt(b.get(key))} | {_fmt(b.get('peak_mb'), 0)} | {_ratio(ratio)} | {gpu} | "
                f"{o.s_per_it} | {o.memory} | {o.source} |"
            )
    lines.append("")
    if not cuda:
        lines += [
            f'The column "{ours_gpu}" is empty: no GPU was available for this run. On a GPU machine run '
            "`python benchmarks/natural.py --device cuda --size 256 --out benchmarks/results/natural_gpu.md`.",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + args.notes_text)


# ----------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(ALL_METHODS),
        choices=list(ALL_METHODS),
        metavar="METHOD",
        help=f"methods to measure (default: all of {', '.join(ALL_METHODS)})",
    )
    p.add_argument("--size", type=int, default=None, help="image side (default 256 on cuda, 64 on cpu)")
    p.add_argument("--width", type=float, default=1.0, help="network width multiplier (1 = official)")
    p.add_argument("--batch", type=int, default=None, help="batch for every method (default: official per GPU)")
    p.add_argument(
        "--batch-override",
        nargs="+",
        default=[],
        metavar="METHOD=N",
        help="per-method batch, e.g. sae=2 (wins over --batch)",
    )
    p.add_argument("--num-classes", type=int, default=151, help="label classes of SPADE / RABIT (ADE20K: 151)")
    p.add_argument("--iterations", type=int, default=5, help="timed training iterations per method")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before timing")
    p.add_argument("--style-iterations", type=int, default=10, help="timed DTP iterations / NST evaluations")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the baselines")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--in-process", action="store_true", help="no fresh process per measurement (tests)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement before it is abandoned")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended below the tables")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/natural_cpu.md"))
    p.add_argument("--json", type=Path, default=None, help="also write the raw measurements as JSON")
    args = p.parse_args(argv)
    if args.size is None:
        args.size = 256 if args.device.startswith("cuda") else 64
    if args.size < 16 or args.size % 16:
        p.error(f"--size must be a multiple of 16 and >= 16, got {args.size}")
    if args.iterations < 1 or args.warmup < 0 or args.style_iterations < 1:
        p.error("--iterations and --style-iterations must be >= 1 and --warmup >= 0")
    if not 0 < args.width <= 1:
        p.error(f"--width must be in (0, 1], got {args.width}")
    overrides = {}
    for item in args.batch_override:
        key, _, value = item.partition("=")
        if key not in ALL_METHODS or not value.isdigit() or int(value) < 1:
            p.error(f"--batch-override {item!r}: expected METHOD=N with METHOD in {list(ALL_METHODS)} and N >= 1")
        overrides[key] = int(value)
    args.batch_override = overrides
    sae_batch = overrides.get("sae", args.batch)
    if sae_batch is not None and sae_batch % 2 and "sae" in args.methods:
        p.error(f"the Swapping Autoencoder needs an even batch, got {sae_batch}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = ["python", *sys.argv] if argv is None else ["python", "benchmarks/natural.py", *argv]
    args.started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.notes_text = args.notes.read_text() if args.notes else ""
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, baselines = [], {}
    for name in args.methods:
        print(f"[{name}]", flush=True)
        rows.append(run_one(name, args, baseline=False))
        print(f"  method:   {_summary(rows[-1])}", flush=True)
        if args.baseline:
            baselines[name] = run_one(name, args, baseline=True)
            print(f"  baseline: {_summary(baselines[name])}", flush=True)
    write_table(args.out, rows, baselines, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "baselines": baselines}, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


def _summary(row: dict) -> str:
    if "error" in row:
        return f"FAILED {row['error']}"
    return f"{row['s_per_it']:.3f} s/it (CPU {row['cpu_s_per_it']:.3f}), peak {row['peak_mb']:.0f} MB"


if __name__ == "__main__":
    raise SystemExit(main())
