"""``medi2i.viz.demo_models``: the notebooks' choice between the bundle's model and a tiny labelled one, and the
RL-I2IT steps trajectory on the fixed grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medi2i.errors import Medi2iInputError
from medi2i.viz.demo_models import bundle_model, find_bundle, registration_trajectory

REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TINY_RL = {
    "dataset_dir": None,  # filled per test
    "device": "cpu",
    "val_split": "train",  # a 4-subject cohort has a single (training) pair
    "model_size": [32, 32],
    "config#warmup_episodes": 1,
    "config#train_steps": 2,
    "config#test_steps": 3,
    "config#batch_size": 2,
    "config#test_stop": "none",  # the overlay's similarity guard would stop an untrained agent at step 0
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from medi2i.data.demo import ensure_demo_cohort

    return ensure_demo_cohort(tmp_path_factory.mktemp("demo"), subjects=4, dims=(2, 3), progress=False)


@pytest.fixture(scope="module")
def tiny_rl(tmp_path_factory, demo):
    work = tmp_path_factory.mktemp("rl_work")
    model = bundle_model(
        "rl_i2it",
        work,
        bundle_dir=REPO_BUNDLES / "rl_i2it",
        tiny=2,
        prefer_bundle_model=False,
        overrides={**TINY_RL, "dataset_dir": str(demo)},
    )
    return work, model


def test_find_bundle_finds_the_checkout_and_rejects_unknown_names(tmp_path, monkeypatch):
    assert find_bundle("bidpm", tmp_path) == (REPO_BUNDLES / "bidpm").resolve()  # beside the package
    nested = tmp_path / "work" / "deep"
    nested.mkdir(parents=True)
    copy = tmp_path / "bundles" / "rl_i2it"
    copy.mkdir(parents=True)
    for name in ("train.json", "demo_cpu.json"):
        (copy / name).write_text("{}")
    assert find_bundle("rl_i2it", nested) == copy.resolve()  # above the working directory comes first
    with pytest.raises(ValueError, match="bundle must be one of"):
        find_bundle("voxelmorph")
    import medi2i

    monkeypatch.setattr(medi2i, "__file__", str(tmp_path / "site" / "medi2i" / "__init__.py"))
    with pytest.raises(Medi2iInputError, match="bundle folder not found"):
        find_bundle("bidpm", tmp_path / "work")


def test_bundle_model_prefers_the_bundles_trained_model(tmp_path):
    bundle = tmp_path / "bidpm"
    shutil.copytree(REPO_BUNDLES / "bidpm", bundle, ignore=shutil.ignore_patterns("models", "runs", "eval"))
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"not read here")
    (bundle / "runs").mkdir()
    model = bundle_model("bidpm", tmp_path / "work", bundle_dir=bundle)
    assert model.path == bundle / "models" / "model.pt" and not model.trained_here
    assert model.label == "Bi-DPM bundle model" and model.log_dir == bundle / "runs"
    assert not (tmp_path / "work").exists()  # nothing trained, nothing written
    with pytest.raises(ValueError, match="tiny must be >= 1"):
        bundle_model("bidpm", tmp_path / "work", bundle_dir=bundle, tiny=0)


def test_tiny_model_is_trained_with_the_bundle_config_labelled_and_reused(tiny_rl, demo):
    from medi2i.registration.model_files import load_agent

    work, model = tiny_rl
    assert model.trained_here and model.path == work.resolve() / "models" / "model.pt"
    assert model.label == "RL-I2IT tiny notebook model (2 episodes), not the demo model"
    assert model.log_dir is not None and any(model.log_dir.glob("events.out.tfevents.*"))
    agent = load_agent(model.path, device="cpu")
    assert agent.image_size == (32, 32) and agent.config.test_steps == 3  # the overrides reached the config
    stamp = model.path.stat().st_mtime_ns
    again = bundle_model("rl_i2it", work, bundle_dir=REPO_BUNDLES / "rl_i2it", tiny=2, prefer_bundle_model=False)
    assert again == model and model.path.stat().st_mtime_ns == stamp  # reused, not retrained


def test_tiny_bidpm_model_translates_with_the_recipes_overrides(tmp_path, demo):
    from medi2i.synthesis.model_files import load_translator

    tiny_network = {
        "dataset_dir": str(demo),
        "batch_size": 2,
        "model_size": [16, 16],
        "network_def::channels": [8, 8],
        "network_def::attention_levels": [False, False],
        "network_def::num_head_channels": 8,
    }
    model = bundle_model(
        "bidpm", tmp_path, bundle_dir=REPO_BUNDLES / "bidpm", tiny=2, prefer_bundle_model=False, overrides=tiny_network
    )
    assert model.label == "Bi-DPM tiny notebook model (2 iterations), not the demo model"
    assert model.log_dir == tmp_path.resolve() / "runs" and any(model.log_dir.glob("events.out.tfevents.*"))
    assert not (tmp_path / "eval").exists()  # the recipe runs training only, not the overlay's demo inference
    translator = load_translator(model.path)
    assert translator.model_size == (16, 16)


def test_registration_trajectory_matches_the_written_field_and_starts_at_identity(tiny_rl, demo, tmp_path):
    from medi2i.data.manifest import read_manifest
    from medi2i.io import load_volume
    from medi2i.metrics.overlap import mean_dice
    from medi2i.registration.model_files import load_agent
    from medi2i.registration.volumes import ManifestRegistrar
    from medi2i.spatial import read_ddf

    _, model = tiny_rl
    agent = load_agent(model.path, device="cpu")
    manifest = demo / "registration_2d.csv"
    row = read_manifest(manifest, demo, kind="registration")[0]
    fixed, moving = load_volume(row["fixed"]), load_volume(row["moving"])
    fixed_label = load_volume(row["fixed_label"], kind="label").array
    moving_label = load_volume(row["moving_label"], kind="label").array
    traj = registration_trajectory(agent, fixed, moving, fixed_label=fixed_label, moving_label=moving_label)
    assert traj.steps == [0, 1, 2, 3] and len(traj.ddfs) == 3 and len(traj.dice) == 4
    assert all(d.shape == (2, *fixed.shape) for d in traj.ddfs)
    assert traj.dice[0] == pytest.approx(mean_dice(moving_label, fixed_label))
    ManifestRegistrar(agent, manifest, tmp_path / "fields", data_root=demo, split=None, max_cases=1).run()
    written, _ = read_ddf(tmp_path / "fields" / f"disp_{row['pair_id']}.nii.gz")
    np.testing.assert_allclose(traj.ddfs[-1], written, atol=1e-5)  # step T = what inference.json writes
    assert not np.allclose(traj.ddfs[0], traj.ddfs[-1])  # the field accumulates over steps
    no_labels = registration_trajectory(agent, fixed, moving, steps=1)
    assert len(no_labels.ddfs) == 1 and no_labels.dice == []
    with pytest.raises(ValueError, match="give both"):
        registration_trajectory(agent, fixed, moving, fixed_label=fixed_label)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        registration_trajectory(agent, fixed, moving, steps=0)
