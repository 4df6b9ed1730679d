"""The ``bundles/rl_i2it`` MONAI bundle: metadata, tiny demo training, then ``medi2i register`` with its model.

CLI-style overrides make the demo overlay tiny (32x32 crops of the 2D demo slices, 3 episodes of 2 steps)
and point it at a 4-subject 2D demo cohort in a temporary folder (one pair, used for training and
validation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import medi2i.cli

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "rl_i2it"
META = str(BUNDLE / "metadata.json")
LOGGING = str(BUNDLE / "logging.conf")
SCHEMA = str(BUNDLE.parent / "schemas" / "meta_schema.json")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from medi2i.data.demo import ensure_demo_cohort

    return ensure_demo_cohort(tmp_path_factory.mktemp("demo"), subjects=4, dims=(2,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo):
    from monai.bundle import ConfigWorkflow

    root = tmp_path_factory.mktemp("rl_i2it")
    wf = ConfigWorkflow(
        workflow_type=None,
        config_file=[str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")],
        meta_file=META,
        logging_file=LOGGING,
        bundle_root=str(root),
        dataset_dir=str(demo),
        device="cpu",
        val_split="train",  # a 4-subject cohort has a single (training) pair
        model_size=[32, 32],
        max_episodes=3,
        val_interval=1,
        checkpoint_interval=1,
        log_interval=0,
        **{"config#warmup_episodes": 1, "config#train_steps": 2, "config#test_steps": 2, "config#batch_size": 2},
    )
    wf.initialize()
    wf.run()
    trainer = wf.parser.get_parsed_content("trainer")
    wf.finalize()
    return root, trainer


def test_metadata_verifies_offline() -> None:
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=SCHEMA)  # raises on a schema violation


def test_default_train_config_resolves_without_building() -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json")])
    assert parser["model_size"] == [96, 128, 96] and parser["config"]["network"] == "spac"
    overlay = ConfigParser()
    overlay.read_config([str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")])
    assert overlay["spatial_dims"] == 2 and overlay["demo_name"] == "registration_2d"


def test_demo_training_writes_agent_and_checkpoints(trained) -> None:
    root, trainer = trained
    assert trainer.state.iteration == 3 and trainer.learner.episode == 3
    models = root / "models"
    for name in ("model.pt", "rl_i2it_final.pt", "rl_i2it_best.pt"):
        assert (models / name).is_file(), name
    from medi2i.registration.model_files import load_agent

    agent = load_agent(root, device="cpu")  # the bundle folder resolves to models/model.pt
    assert agent.image_size == (32, 32) and agent.config.test_steps == 2
    assert agent.config.network == "vm_budget" and agent.config.log_alpha_init == -6.0  # the overlay's settings
    # the file holds one of the trained agent's snapshots: the best-validation one, written by AgentSaver
    assert math.isfinite(trainer.state.metrics["val_dice"])


def test_register_cli_uses_the_bundle_model(trained, demo, tmp_path, monkeypatch, capsys) -> None:
    if "register" not in medi2i.cli.SUBCOMMANDS:
        monkeypatch.setitem(medi2i.cli.SUBCOMMANDS, "register", "medi2i.cli.register")
    root, _ = trained
    d = demo / "2d"
    out = tmp_path / "reg"
    argv = ["register", "--bundle", str(root), "--fixed", str(d / "sub-000_t1w.nii.gz")]
    argv += ["--moving", str(d / "sub-001_t1w.nii.gz"), "--moving-label", str(d / "sub-001_label.nii.gz")]
    argv += ["--fixed-label", str(d / "sub-000_label.nii.gz"), "--out", str(out), "--device", "cpu"]
    assert medi2i.cli.main(argv) == 0
    assert "Dice" in capsys.readouterr().out
    fixed = nib.load(d / "sub-000_t1w.nii.gz")
    ddf = nib.load(out / "ddf.nii.gz")
    assert ddf.shape[-1] == 2 and ddf.shape[:2] == fixed.shape[:2]
    assert np.allclose(ddf.affine, fixed.affine, atol=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0.0 <= metrics["dice"] <= 1.0


def test_inference_and_evaluate_configs(trained, demo) -> None:
    from monai.bundle import ConfigWorkflow

    root, _ = trained
    wf = ConfigWorkflow(
        workflow_type="infer",
        config_file=[str(BUNDLE / "inference.json"), str(BUNDLE / "evaluate.json")],
        meta_file=META,
        logging_file=LOGGING,
        bundle_root=str(root),
        dataset_dir=str(demo),
        demo_name="registration_2d",
        split="train",  # the 4-subject cohort's only pair
        device="cpu",
        output_dir=str(root / "fields"),
        eval_dir=str(root / "fields_eval"),
    )
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    row = pd.read_csv(demo / "registration_2d.csv").query("split == 'train'").iloc[0]
    disp = nib.load(root / "fields" / f"disp_{row.pair_id}.nii.gz")
    fixed = nib.load(demo / row.fixed)
    assert disp.shape[:2] == fixed.shape[:2] and disp.shape[-1] == 2
    assert np.allclose(disp.affine, fixed.affine, atol=1e-4)
    summary = pd.read_csv(root / "fields_eval" / "registration_summary.csv")
    assert {"dice_mean", "hd95_mean", "folding_percent"} <= set(summary.iloc[:, 0]) | set(summary.columns)
    cases = pd.read_csv(root / "fields_eval" / "registration_cases.csv")
    assert len(cases) == 1 and 0.0 <= cases["dice_mean"].iloc[0] <= 1.0
