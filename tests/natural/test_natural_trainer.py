"""AdversarialTrainer: exact resume (also mid-epoch, with image pools, lazy modules and RNG), data passes,
LR schedule, checkpoint errors, final model file (park_thesis.md section 1, "Checkpointing")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.cyclegan import CycleGAN
from medi2i.natural.model_files import load_model
from medi2i.natural.trainer import AdversarialMethod, AdversarialTrainer, StepOutput


class RandomPairs(torch.utils.data.Dataset):
    """Deterministic per (epoch, index); records the epochs it was set to."""

    def __init__(self, n: int = 6, size: int = 16) -> None:
        self.n, self.size, self.epoch, self.epochs = n, size, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 * self.epoch + index)
        shape = (1, self.size, self.size)
        return {"A": torch.rand(shape, generator=g) * 2 - 1, "B": torch.rand(shape, generator=g) * 2 - 1}


def _tiny_cyclegan() -> CycleGAN:
    return CycleGAN(in_channels=1, out_channels=1, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, pool_size=3)


def _loader(dataset=None) -> torch.utils.data.DataLoader:
    # shuffle=True: the sampler's order must also be reproduced on resume
    return torch.utils.data.DataLoader(dataset or RandomPairs(), batch_size=2, shuffle=True)


def _train_cyclegan(total: int, checkpoint_dir: Path | None = None, resume=None, **kwargs) -> AdversarialTrainer:
    trainer = AdversarialTrainer(
        _tiny_cyclegan(),
        _loader(),
        max_epochs=100,
        max_iterations=total,
        epoch_length=4,  # len(loader) is 3: epochs and data passes do not coincide
        n_constant=1,
        n_decay=2,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        save_every=0,
        **kwargs,
    )
    trainer.run()
    return trainer


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"differ: {different[:5]}"


@pytest.mark.parametrize("k", [3, 4])  # 3: inside epoch 1 and data pass 1; 4: at an epoch boundary
def test_cyclegan_resume_is_bit_identical(tmp_path, k):
    straight = _train_cyclegan(7)
    _train_cyclegan(k, tmp_path)
    resumed = _train_cyclegan(7, tmp_path, resume="latest")
    assert resumed.iteration == straight.iteration == 7
    _assert_same_state(straight.method, resumed.method)
    for name in ("G", "D"):
        assert (
            straight.optimizers[name].state_dict()["state"].keys()
            == resumed.optimizers[name].state_dict()["state"].keys()
        )
        assert straight.schedulers[name].last_epoch == resumed.schedulers[name].last_epoch == 1
        for sa, sb in zip(
            straight.optimizers[name].state_dict()["state"].values(),
            resumed.optimizers[name].state_dict()["state"].values(),
            strict=True,
        ):
            assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    for pool in ("pool_A", "pool_B"):
        a, b = getattr(straight.method, pool), getattr(resumed.method, pool)
        assert all(torch.equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    assert straight.last_output.losses == resumed.last_output.losses


def test_warm_restart_without_training_state_differs(tmp_path):
    """Control: reloading only the weights (what the official code does) does NOT reproduce the run, so the
    exact-resume test above can fail."""
    straight = _train_cyclegan(7)
    first = _train_cyclegan(3, tmp_path)
    weights_only = _tiny_cyclegan()
    weights_only.load_state_dict(first.method.state_dict())
    warm = AdversarialTrainer(
        weights_only, _loader(), max_epochs=100, max_iterations=4, epoch_length=4, n_constant=1, n_decay=2, device="cpu"
    )
    warm.run()
    pairs = zip(straight.method.state_dict().values(), warm.method.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


class LazyNoisy(AdversarialMethod):
    """Toy method: a lazily built linear layer (sized from the batch) trained on noisy inputs (global RNG)."""

    name = "lazy-noisy"

    def __init__(self, hidden: int = 3) -> None:
        super().__init__(hidden=hidden)
        self.head: nn.Module | None = None
        self.seen: list[int] = []

    def setup_lazy(self, batch):
        if self.head is None:
            self.head = nn.Linear(batch["A"].shape[-1], 1).to(batch["A"].device)

    def configure_optimizers(self):
        return {"G": torch.optim.Adam(self.head.parameters(), lr=1e-2)}

    def training_step(self, batch, optimizers, step):
        self.seen.append(step)
        x = batch["A"] + 0.1 * torch.randn_like(batch["A"])
        loss = (self.head(x) - batch["B"].mean(dim=-1, keepdim=True)).pow(2).mean()
        optimizers["G"].zero_grad()
        loss.backward()
        optimizers["G"].step()
        return StepOutput(losses={"G": float(loss.detach())}, images={"A": batch["A"]})

    def translate(self, inputs, **kwargs):
        return self.head(inputs)

    def inference_modules(self):
        return {"head": self.head}


def _lazy_trainer(total, **kwargs) -> AdversarialTrainer:
    return AdversarialTrainer(LazyNoisy(), _loader(RandomPairs(n=5, size=4)), max_epochs=total, device="cpu", **kwargs)


def test_resume_rebuilds_lazy_modules_and_restores_rng(tmp_path):
    straight = _lazy_trainer(4)  # 3 batches per epoch (5 items, batch 2)
    straight.run()
    _lazy_trainer(2, checkpoint_dir=tmp_path).run()
    resumed = _lazy_trainer(4, checkpoint_dir=tmp_path, resume=tmp_path / "checkpoint_last.pt")
    assert resumed.iteration == 6
    resumed.run()
    assert resumed.method.seen == list(range(6, 12)) and straight.method.seen == list(range(12))
    _assert_same_state(straight.method, resumed.method)
    nothing = _lazy_trainer(4, checkpoint_dir=tmp_path, resume="latest")
    assert nothing.iteration == 12 and nothing.run() is None  # already complete: nothing runs


def test_dataset_epochs_follow_data_passes_and_lr_decays():
    dataset = RandomPairs(n=4)
    trainer = AdversarialTrainer(
        LazyNoisy(), _loader(dataset), max_epochs=3, n_constant=1, n_decay=2, device="cpu", log_every=1
    )
    assert trainer.epoch_length == 2
    trainer.run()
    assert trainer.iteration == 6
    assert [e for e in dataset.epochs if e > 0] == [1, 2]  # set_epoch(q) before pass q (0 also for setup_lazy)
    # epochs 0, 1, 2 ran at lr factors 1, 2/3, 1/3; after the last step the factor is 0
    assert trainer.schedulers["G"].last_epoch == 3
    assert trainer.optimizers["G"].param_groups[0]["lr"] == pytest.approx(0.0)


def test_final_model_file_and_tensorboard(tmp_path):
    trainer = _train_cyclegan(2, tmp_path / "run", log_dir=tmp_path / "tb", log_every=1, image_every=1)
    model = load_model(tmp_path / "run" / "model.pt")
    assert isinstance(model, CycleGAN) and not model.training
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(model.translate(x), trainer.method.translate(x))
    assert any((tmp_path / "tb").iterdir())


def test_checkpoint_errors(tmp_path):
    with pytest.raises(Medi2iInputError, match="not found"):
        _lazy_trainer(1, resume=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Medi2iInputError, match="cannot read"):
        _lazy_trainer(1, resume=bad)
    _train_cyclegan(1, tmp_path)
    with pytest.raises(Medi2iInputError, match="another method") as err:
        _lazy_trainer(1, resume=tmp_path / "checkpoint_last.pt")
    assert err.value.field == "method_name"
    other = CycleGAN(in_channels=1, out_channels=1, ngf=8, ndf=4, n_blocks=1, n_layers_d=2, pool_size=3)
    with pytest.raises(Medi2iInputError, match="does not fit") as err:
        AdversarialTrainer(other, _loader(), resume=tmp_path / "checkpoint_last.pt", device="cpu")
    assert err.value.path == str(tmp_path / "checkpoint_last.pt")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_epochs": 0}, "max_epochs"),
        ({"epoch_length": 0}, "epoch_length"),
        ({"n_constant": 1}, "n_decay"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"resume": "latest"}, "checkpoint_dir"),
    ],
)
def test_illegal_trainer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdversarialTrainer(LazyNoisy(), _loader(), device="cpu", **kwargs)


def test_model_file_keeps_the_data_record_for_translate(tmp_path):
    from medi2i.cli.translate import read_data_record
    from medi2i.natural.cyclegan import CycleGAN
    from medi2i.natural.model_files import load_model, save_model

    method = CycleGAN(in_channels=1, out_channels=1, ngf=4, n_blocks=1, ndf=4, n_layers_d=1)
    record = {"A": {"kind": "mr", "channels": 1}, "B": {"kind": "ct", "channels": 1}}
    path = save_model(tmp_path / "model.pt", method, data=record)
    assert read_data_record(path) == record
    assert load_model(path, device="cpu").name == "cyclegan"
    assert read_data_record(save_model(tmp_path / "bare.pt", method)) == {}
    with pytest.raises(ValueError, match="JSON-able"):
        save_model(tmp_path / "bad.pt", method, data={"A": object()})
