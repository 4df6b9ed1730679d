"""Checkpoints: exact resume of optimiser + RNG, atomic writes, ignite handler files, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from medi2i.checkpoint import CheckpointHandler, RNGState, load_checkpoint, save_checkpoint
from medi2i.errors import Medi2iInputError


def _train_steps(net, opt, steps):
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 3) + float(np.random.rand()) + random.random()  # noqa: NPY002 (global RNGs on purpose)
        loss = (net(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_resume_continues_exactly(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    _train_steps(net, opt, 3)
    save_checkpoint(tmp_path / "c.pt", {"net": net, "opt": opt, "rng": RNGState()})
    reference = _train_steps(net, opt, 4)

    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
    torch.manual_seed(123)  # scramble the RNGs: the checkpoint must restore them
    np.random.seed(5)  # noqa: NPY002
    load_checkpoint(tmp_path / "c.pt", {"net": net2, "opt": opt2, "rng": RNGState()})
    assert _train_steps(net2, opt2, 4) == reference


def test_errors_name_the_file(tmp_path):
    with pytest.raises(Medi2iInputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt", {})
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Medi2iInputError, match="cannot read checkpoint") as info:
        load_checkpoint(tmp_path / "bad.pt", {})
    assert "bad.pt" in str(info.value)
    save_checkpoint(tmp_path / "c.pt", {"net": torch.nn.Linear(1, 1)})
    with pytest.raises(Medi2iInputError, match="lacks objects"):
        load_checkpoint(tmp_path / "c.pt", {"net": torch.nn.Linear(1, 1), "opt": RNGState()})
    with pytest.raises(ValueError, match="clash"):
        save_checkpoint(tmp_path / "d.pt", {"net": torch.nn.Linear(1, 1)}, extra={"net": 1})


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"net": torch.nn.Linear(1, 1)})
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"net": torch.nn.Linear(1, 1)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_handler_writes_last_final_and_best(tmp_path):
    net = torch.nn.Linear(1, 1)
    engine = Engine(lambda e, b: None)
    scores = iter([0.5, 0.9, 0.7])
    handler = CheckpointHandler(
        tmp_path, {"net": net, "engine": engine}, save_interval=2, score_function=lambda e: next(scores)
    )
    handler.attach(engine)
    engine.run([0, 1, 2], max_epochs=3)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint_last.pt", "checkpoint_final.pt", "checkpoint_best.pt"}
    best = torch.load(tmp_path / "checkpoint_best.pt", weights_only=True)
    assert best["best_score"] == 0.9 and best["engine"]["iteration"] == 6  # end of epoch 2
    final = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)
    assert final["engine"]["iteration"] == 9
    resumed = Engine(lambda e, b: None)
    load_checkpoint(tmp_path / "checkpoint_best.pt", {"engine": resumed})
    seen = []
    resumed.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    resumed.run([0, 1, 2], max_epochs=3)
    assert seen == [3]  # continues with the third epoch


def test_read_model_file_errors_and_bundle_folder(tmp_path):
    from medi2i.checkpoint import read_model_file

    kw = {"required": ("network", "settings"), "kind": "translator", "train_command": "train it"}
    with pytest.raises(Medi2iInputError, match="no trained model found") as info:
        read_model_file(tmp_path, **kw)  # a bundle folder without models/model.pt
    assert "train it" in str(info.value)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"truncated")
    with pytest.raises(Medi2iInputError, match="cannot read the translator file"):
        read_model_file(tmp_path, **kw)
    save_checkpoint(tmp_path / "models" / "model.pt", {"network": torch.nn.Linear(1, 1)})
    with pytest.raises(Medi2iInputError, match="not a medi2i translator file"):
        read_model_file(tmp_path, **kw)
    save_checkpoint(tmp_path / "models" / "model.pt", {"network": torch.nn.Linear(1, 1)}, extra={"settings": {}})
    path, payload = read_model_file(tmp_path, **kw)
    assert path == tmp_path / "models" / "model.pt" and payload["settings"] == {}


def test_best_model_saver_keeps_the_best_and_resumes_it(tmp_path):
    from medi2i.checkpoint import BestModelSaver

    class Recorder(BestModelSaver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.saved = []

        def save(self):
            self.saved.append(self.best)
            self.path.write_text(str(self.best))
            return self.path

    scores = iter([0.5, 0.9, 0.7, None])
    saver = Recorder(tmp_path / "m.pt", score_function=lambda e: next(scores), mode="max")
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    engine.run([0, 1, 2, 3], max_epochs=1)
    assert saver.saved == [0.5, 0.9]  # 0.7 is worse, None is "not scored"; the final save is skipped
    resumed = Recorder(tmp_path / "m.pt", mode="max")
    resumed.load_state_dict(saver.state_dict())
    assert resumed.best == 0.9
    with pytest.raises(ValueError, match="mode"):
        Recorder(tmp_path / "m.pt", mode="best")


def test_bundle_model_path_accepts_a_folder_holding_model_pt(tmp_path):
    from medi2i.checkpoint import bundle_model_path

    run = tmp_path / "models" / "cyclegan"
    run.mkdir(parents=True)
    assert bundle_model_path(run) == run / "models" / "model.pt"  # nothing there yet: the bundle layout
    (run / "model.pt").write_bytes(b"x")
    assert bundle_model_path(run) == run / "model.pt"
    assert bundle_model_path(tmp_path) == tmp_path / "models" / "model.pt"
    assert bundle_model_path(run / "model.pt") == run / "model.pt"
