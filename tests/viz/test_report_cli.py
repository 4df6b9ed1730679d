"""HTML reports are self-contained, list every case, sort worst first; ``medi2i qa`` writes them from files."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import medi2i.cli
from medi2i.errors import Medi2iInputError
from medi2i.spatial import write_ddf
from medi2i.viz.cases import RegistrationQACase, SynthesisQACase
from medi2i.viz.report import CaseResult, qa_registration, qa_synthesis, sort_worst_first, training_section
from tests.conftest import oblique_affine, write_nifti

SHAPE = (12, 14, 10)
AFF = oblique_affine((1.5, 1.2, 2.0), angle_deg=10.0)


def blob() -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    labels = np.where(r < 0.45, 2, np.where(r < 0.8, 1, 0)).astype(np.uint8)
    ct = np.choose(labels, [-1000.0, 40.0, 900.0]).astype(np.float32)
    return ct, labels


def assert_self_contained(html: str) -> None:
    assert not re.search(r"https?:", html, re.I), "external reference"
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    imgs = re.findall(r"<img\b[^>]*>", html)
    for tag in imgs:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag), tag[:80]
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(re.fullmatch(r"cases/[\w.-]+\.html", h) for h in hrefs), hrefs
    assert not re.search(r'\ssrc="(?!data:)', html)


@pytest.fixture
def synthesis_cohort(tmp_path):
    ct, labels = blob()
    data = tmp_path / "data"
    preds = tmp_path / "preds"
    data.mkdir()
    preds.mkdir()
    rows = []
    errors = {"s-a": 5.0, "s-b": 80.0, "s-c": 30.0}  # constant offsets -> MAE inside the mask = offset
    for sid, offset in errors.items():
        write_nifti(data / f"{sid}_t1.nii.gz", labels.astype(np.int16) * 300, AFF)
        write_nifti(data / f"{sid}_ct.nii.gz", ct.astype(np.int16), AFF)
        write_nifti(data / f"{sid}_mask.nii.gz", (labels > 0).astype(np.uint8), AFF)
        write_nifti(preds / f"{sid}.nii.gz", ct + offset, AFF)
        rows.append([sid, "test", f"{sid}_t1.nii.gz", f"{sid}_ct.nii.gz", f"{sid}_mask.nii.gz"])
    manifest = data / "m.csv"
    pd.DataFrame(rows, columns=["subject_id", "split", "source", "target", "mask"]).to_csv(manifest, index=False)
    return data, preds, manifest, errors


def test_synthesis_report_self_contained_every_case_worst_first(synthesis_cohort, tmp_path):
    data, preds, _, errors = synthesis_cohort
    cases = [
        SynthesisQACase(
            s, data / f"{s}_t1.nii.gz", preds / f"{s}.nii.gz", data / f"{s}_ct.nii.gz", data / f"{s}_mask.nii.gz"
        )
        for s in errors
    ]
    index = qa_synthesis(cases, tmp_path / "qa", preset="ct")
    html = index.read_text()
    assert_self_contained(html)
    linked = re.findall(r'href="cases/([\w.-]+)\.html"', html)
    assert linked == ["s-b", "s-c", "s-a"]  # MAE 80 > 30 > 5: worst first
    table = pd.read_csv(tmp_path / "qa" / "qa_cases.csv")
    assert table["case_id"].tolist() == linked
    np.testing.assert_allclose(table["mae"], [80, 30, 5], rtol=1e-4)
    for sid in errors:
        page = (tmp_path / "qa" / "cases" / f"{sid}.html").read_text()
        assert_self_contained(page)
        assert len(re.findall(r"<img\b", page)) == 2
        assert "spacing (mm)" in page and "1.5 x 1.2 x 2" in page  # geometry table
        assert (tmp_path / "qa" / "cases" / f"{sid}.png").read_bytes()[:4] == b"\x89PNG"


def test_sort_worst_first_directions_and_nan():
    rs = [CaseResult(k, None, {"dice_mean": v, "mae": v}) for k, v in (("a", 0.9), ("b", float("nan")), ("c", 0.5))]
    assert [r.case_id for r in sort_worst_first(rs, "dice_mean")] == ["b", "c", "a"]  # low Dice is bad
    assert [r.case_id for r in sort_worst_first(rs, "mae")] == ["b", "a", "c"]  # high MAE is bad
    with pytest.raises(Medi2iInputError, match="sort metric"):
        sort_worst_first(rs, "psnr")


def test_registration_report_sorted_by_dice_and_training_section(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    ct, labels = blob()
    root = tmp_path / "d"
    root.mkdir()
    write_nifti(root / "f.nii.gz", ct, AFF)
    write_nifti(root / "fl.nii.gz", labels, AFF)
    cases = []
    for name, shift in (("good", 0), ("bad", 3), ("mid", 1)):
        write_nifti(root / f"m_{name}.nii.gz", np.roll(ct, shift, 0), AFF)
        write_nifti(root / f"ml_{name}.nii.gz", np.roll(labels, shift, 0), AFF)
        write_ddf(root / f"disp_{name}.nii.gz", np.zeros((3, *SHAPE), np.float32), AFF)
        cases.append(
            RegistrationQACase(
                name,
                root / "f.nii.gz",
                root / f"m_{name}.nii.gz",
                root / f"disp_{name}.nii.gz",
                root / "fl.nii.gz",
                root / f"ml_{name}.nii.gz",
            )
        )
    logs = tmp_path / "logs" / "train"
    writer = SummaryWriter(str(logs))
    for step in range(5):
        writer.add_scalar("losses/train", 1.0 / (step + 1), step)
    writer.add_image("samples/grid", np.random.default_rng(0).random((3, 8, 8)), 4)
    writer.close()
    index = qa_registration(cases, tmp_path / "qa", log_dir=tmp_path / "logs")
    html = index.read_text()
    assert_self_contained(html)
    assert re.findall(r'href="cases/(\w+)\.html"', html) == ["bad", "mid", "good"]
    assert "losses/train" not in html or "curves" in html
    assert "samples/grid step 4" in html
    assert len(re.findall(r"<img\b", html)) == 2  # curves + one sample grid
    assert "sorted by dice_mean" in html


def test_training_section_needs_event_files(tmp_path):
    with pytest.raises(Medi2iInputError, match="TensorBoard"):
        training_section(tmp_path)


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setitem(medi2i.cli.SUBCOMMANDS, "qa", "medi2i.cli.qa")
    return medi2i.cli.main


def test_cli_synthesis_manifest_and_explicit(cli, synthesis_cohort, tmp_path, capsys):
    data, preds, manifest, errors = synthesis_cohort
    out = tmp_path / "qa_m"
    assert (
        cli(
            [
                "qa",
                "synthesis",
                "--manifest",
                str(manifest),
                "--data-root",
                str(data),
                "--pred-dir",
                str(preds),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "3 case(s)" in capsys.readouterr().out
    assert sorted(p.stem for p in (out / "cases").glob("*.html")) == sorted(errors)
    out2 = tmp_path / "qa_e"
    args = [
        "qa",
        "synthesis",
        "--source",
        str(data / "s-a_t1.nii.gz"),
        "--pred",
        str(preds / "s-a.nii.gz"),
        "--target",
        str(data / "s-a_ct.nii.gz"),
        "--out",
        str(out2),
        "--preset",
        "mr",
    ]
    assert cli(args) == 0
    assert (out2 / "cases" / "s-a.html").is_file()


def test_cli_registration_without_labels(cli, tmp_path):
    ct, _ = blob()
    write_nifti(tmp_path / "f.nii.gz", ct, AFF)
    u = np.zeros((3, *SHAPE), np.float32)
    u[0, 6, 7, 5] = 3.0
    write_ddf(tmp_path / "disp_x.nii.gz", u, AFF)
    out = tmp_path / "qa"
    args = [
        "qa",
        "registration",
        "--fixed",
        str(tmp_path / "f.nii.gz"),
        "--moving",
        str(tmp_path / "f.nii.gz"),
        "--ddf",
        str(tmp_path / "disp_x.nii.gz"),
        "--out",
        str(out),
    ]
    assert cli(args) == 0
    table = pd.read_csv(out / "qa_cases.csv")
    assert table["case_id"].tolist() == ["disp_x"] and table["folding_percent"].iloc[0] > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source", "a.nii.gz"], "missing --pred"),
        (["--manifest", "m.csv"], "--data-root"),
        (["--manifest", "m.csv", "--data-root", ".", "--source", "a.nii.gz"], "not both"),
        (["--split", "test", "--source", "a", "--pred", "b", "--target", "c"], "only applies"),
        (["--source", "nope.nii.gz", "--pred", "nope.nii.gz", "--target", "nope.nii.gz"], "file not found"),
    ],
)
def test_cli_input_errors_exit_2_and_write_nothing(cli, tmp_path, capsys, extra, message):
    out = tmp_path / "qa"
    assert cli(["qa", "synthesis", *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_registration_needs_both_labels(cli, tmp_path, capsys):
    ct, labels = blob()
    for name, arr in (("f", ct), ("fl", labels)):
        write_nifti(tmp_path / f"{name}.nii.gz", arr, AFF)
    write_ddf(tmp_path / "d.nii.gz", np.zeros((3, *SHAPE), np.float32), AFF)
    files = [
        "--fixed",
        str(tmp_path / "f.nii.gz"),
        "--moving",
        str(tmp_path / "f.nii.gz"),
        "--ddf",
        str(tmp_path / "d.nii.gz"),
    ]
    assert (
        cli(["qa", "registration", *files, "--fixed-label", str(tmp_path / "fl.nii.gz"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "both --fixed-label and --moving-label" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--sort-by", "dice_mean"], "unknown sort metric"), (["--sort-by", "mea"], "unknown sort metric")],
)
def test_cli_bad_sort_metric_fails_before_writing(cli, synthesis_cohort, tmp_path, capsys, extra, message):
    data, preds, manifest, _ = synthesis_cohort
    out = tmp_path / "qa"
    args = ["qa", "synthesis", "--manifest", str(manifest), "--data-root", str(data), "--pred-dir", str(preds)]
    assert cli([*args, "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "cases").exists()


def test_missing_file_of_a_later_case_fails_before_any_page(tmp_path, synthesis_cohort):
    data, preds, _, _ = synthesis_cohort
    good = SynthesisQACase("s-a", data / "s-a_t1.nii.gz", preds / "s-a.nii.gz", data / "s-a_ct.nii.gz")
    bad = SynthesisQACase("s-x", data / "s-a_t1.nii.gz", preds / "missing.nii.gz", data / "s-a_ct.nii.gz")
    with pytest.raises(Medi2iInputError, match="s-x"):
        qa_synthesis([good, bad], tmp_path / "qa")
    assert not (tmp_path / "qa").exists()
    with pytest.raises(Medi2iInputError, match="duplicate"):
        qa_synthesis([good, good], tmp_path / "qa")
