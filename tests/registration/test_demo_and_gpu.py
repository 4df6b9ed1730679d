"""Demo-cohort glue (slow: builds the demo cohort) and a CUDA smoke run (gpu)."""

from __future__ import annotations

import pytest
import torch

from medi2i.registration.config import RLI2ITConfig, smoke_config
from medi2i.registration.learner import RLI2ITLearner
from medi2i.registration.trainer import RLI2ITTrainer, load_pairs


@pytest.mark.slow
def test_demo_registration_2d_pairs_train_validate_and_checkpoint(tmp_path_factory, monkeypatch):
    from medi2i.data.demo import demo_manifest

    demo = tmp_path_factory.mktemp("demo")
    monkeypatch.setenv("MEDI2I_DEMO_DIR", str(demo))
    manifest = demo_manifest("registration_2d", out=demo)
    size = (96, 128)  # 96 x 112 slices padded so that every axis divides by 2**5
    train = load_pairs(manifest, "train", 2, size)
    val = load_pairs(manifest, "val", 2, size)
    assert train.fixed.shape[1:] == (1, *size) and 0.0 <= float(train.fixed.min()) <= float(train.fixed.max()) <= 1.0
    assert set(train.fixed_label.unique().tolist()) >= {1, 2, 3}
    cfg = RLI2ITConfig(
        spatial_dims=2,
        network="vm_budget",
        reward_labels="gt",
        warmup_episodes=1,
        train_steps=4,
        test_steps=2,
        update_every=2,
        planner_every=4,
        batch_size=2,
        buffer_capacity=16,
    )
    trainer = RLI2ITTrainer(
        RLI2ITLearner(cfg, size, "cpu"), train, val, tmp_path_factory.mktemp("run"), log_interval=1, val_interval=2
    )
    trainer.fit(3)
    assert 0.0 < trainer.state.metrics["val_dice"] <= 1.0
    assert (trainer.output_dir / "rl_i2it_best.pt").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_cuda_episode_keeps_everything_on_the_device(precision):
    cfg = smoke_config(warmup_episodes=0, precision=precision, buffer_dtype="float16")
    learner = RLI2ITLearner(cfg, (32, 32), "cuda")
    pair = torch.rand(2, 2, 1, 32, 32, device="cuda")
    logs = learner.run_episode(pair[0], pair[1])
    assert learner.buffer.storage["state"].device.type == "cuda"
    assert all(v.device.type == "cuda" and torch.isfinite(v).all() for v in logs.values())
