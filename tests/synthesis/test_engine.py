"""Training engine: exact resume, EMA, validation metrics, precision and failure handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Events

from medi2i.checkpoint import RNGState
from medi2i.synthesis import build_method
from medi2i.synthesis.data import PartiallyPairedSliceDataset, SubjectSlices
from medi2i.synthesis.ema import EMA, EMAHandler
from medi2i.synthesis.engine import (
    ResumeHandler,
    SynthesisTrainer,
    TrainingCheckpointHandler,
    constant_with_warmup,
    resolve_precision,
)
from medi2i.synthesis.model_files import TranslatorSaver, load_translator, save_translator, translator_settings
from medi2i.synthesis.validation import SynthesisValidationHandler, metric_score

TINY = {"channels": [8, 8], "attention_levels": [False, False], "num_res_blocks": 1, "num_head_channels": 8,
        "norm_num_groups": 8}  # fmt: skip


def _subjects(n: int = 4, size: int = 8) -> list[SubjectSlices]:
    g = torch.Generator().manual_seed(0)
    out = []
    for s in range(n):
        a = torch.rand(3, 1, size, size, generator=g) * 2 - 1
        out.append(SubjectSlices(str(s), a, -a, np.arange(3)))
    return out


def _run(tmp_path, max_epochs: int, resume: str | None = None, method_name: str = "rectified_flow"):
    """Build everything from scratch (as a bundle does) and train ``max_epochs`` epochs of 2 iterations."""
    torch.manual_seed(0)
    method = build_method({"method": method_name, "num_steps": 2, "network": dict(TINY)})
    dataset = PartiallyPairedSliceDataset(_subjects(), batch_size=2, pairing_ratio=1.0, batches_per_epoch=2, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False)
    optimizer = torch.optim.Adam(method.network.parameters(), lr=1e-3)
    scheduler = constant_with_warmup(optimizer, warmup_iterations=3)
    ema = EMA(method.network, decay=0.9)
    objects = {"network": method.network, "ema": ema, "optimizer": optimizer, "lr_scheduler": scheduler,
               "rng": RNGState()}  # fmt: skip
    from monai.handlers import LrScheduleHandler

    handlers = [
        ResumeHandler(resume, dict(objects)),
        LrScheduleHandler(scheduler, epoch_level=False, print_lr=False),
        EMAHandler(ema, method.network),
        TrainingCheckpointHandler(tmp_path, dict(objects), save_interval=2),
    ]
    trainer = SynthesisTrainer("cpu", max_epochs, loader, method, optimizer, grad_clip_norm=1.0,
                               train_handlers=handlers)  # fmt: skip
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    return trainer, method, ema, optimizer, losses


def test_resume_continues_exactly(tmp_path) -> None:
    full, method_full, ema_full, opt_full, losses_full = _run(tmp_path / "full", max_epochs=2)
    _run(tmp_path / "part", max_epochs=1)
    resumed, method_res, ema_res, opt_res, losses_res = _run(
        tmp_path / "resumed", max_epochs=2, resume=str(tmp_path / "part" / "checkpoint_last.pt")
    )
    assert resumed.state.iteration == full.state.iteration == 4
    assert losses_res == losses_full[2:]  # same batches and same random times after the restart
    for a, b in zip(method_full.network.state_dict().values(), method_res.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema_full.module.state_dict().values(), ema_res.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    state_full, state_res = opt_full.state_dict()["state"], opt_res.state_dict()["state"]
    assert all(torch.equal(state_full[k]["exp_avg"], state_res[k]["exp_avg"]) for k in state_full)
    assert opt_full.param_groups[0]["lr"] == opt_res.param_groups[0]["lr"]
    assert all(math.isfinite(v) for v in losses_full)


def test_ema_formula_and_state() -> None:
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9)
    start = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)
    ema.update(net)
    expected = 0.81 * start + (1 - 0.81) * 1.0  # two steps of theta <- 0.9 theta + 0.1 w
    assert torch.allclose(ema.module.weight, expected)
    other = EMA(torch.nn.Linear(2, 1), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight) and other.num_updates == 2
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.0)


def test_validation_reports_both_directions_of_the_untrained_identity(tmp_path) -> None:
    method = build_method({"method": "bidpm", "num_steps": 1, "paired_metric": "l1", "network": dict(TINY)})
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    handler = SynthesisValidationHandler(method, {"a": a, "b": b}, interval=1, ema=EMA(method.network, 0.5),
                                         batch_size=2, log_dir=str(tmp_path / "tb"))  # fmt: skip

    class _Engine:
        state = type("S", (), {"metrics": {}, "iteration": 7})()

    engine = _Engine()
    handler(engine)  # the zero-initialised output layer makes the untrained sampler the identity
    mse = ((a - b) / 2).pow(2).mean(dim=(1, 2, 3))
    expected_psnr = float((10 * torch.log10(1 / mse)).mean())
    m = engine.state.metrics
    assert m["val_a2b_psnr"] == pytest.approx(expected_psnr, rel=1e-4)
    assert m["val_b2a_psnr"] == pytest.approx(expected_psnr, rel=1e-4)
    assert m["val_a2b_mae"] == pytest.approx(float((a - b).abs().mean()), rel=1e-5)
    assert m["val_score"] == pytest.approx((m["val_a2b_ssim"] + m["val_b2a_ssim"]) / 2)
    assert metric_score()(engine) == m["val_score"]
    assert any((tmp_path / "tb").iterdir())


def test_translator_file_round_trip(tmp_path) -> None:
    method = build_method({"method": "bidpm", "num_steps": 2, "paired_metric": "l1", "network": dict(TINY)})
    with torch.no_grad():
        for p in method.network.parameters():
            p.add_(0.01 * torch.randn_like(p))
    settings = translator_settings(method, model_size=(8, 8), modalities=("mr", "ct"))
    path = save_translator(tmp_path / "model.pt", method.network, settings)
    translator = load_translator(path, device="cpu")
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.allclose(translator.translate(x, "a2b"), method.sample(x, "a2b"), atol=1e-6)
    assert translator.source_modality("b2a") == "ct" and translator.target_modality("b2a") == "mr"
    saver = TranslatorSaver(tmp_path / "best.pt", method.network, settings, score_function=metric_score())
    engine = type("E", (), {"state": type("S", (), {"metrics": {"val_score": 0.5}})()})()
    saver._maybe_save(engine)
    engine.state.metrics["val_score"] = 0.4  # worse: the file is not replaced
    saver._maybe_save(engine)
    restored = TranslatorSaver(tmp_path / "best.pt", method.network, settings)
    restored.load_state_dict(saver.state_dict())
    assert restored.best == 0.5 and (tmp_path / "best.pt").is_file()


def test_non_finite_loss_stops_training() -> None:
    class _NaNMethod(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = torch.nn.Linear(1, 1)

        def training_loss(self, a, b, *, paired=None):
            return {"loss": self.network.weight.sum() * float("nan")}

    method = _NaNMethod()
    loader = [{"a": torch.zeros(1, 1, 2, 2), "b": torch.zeros(1, 1, 2, 2)}]
    trainer = SynthesisTrainer("cpu", 1, loader, method, torch.optim.SGD(method.network.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match="iteration 1"):
        trainer.run()


def test_precision_is_gpu_only() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")
