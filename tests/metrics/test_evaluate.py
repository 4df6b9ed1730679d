"""evaluate_synthesis / evaluate_registration and ``medi2i evaluate``: values equal the array functions,
summaries equal their definitions, manifests and prediction folders, geometry errors, nothing written on error."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from medi2i.cli import main
from medi2i.errors import Medi2iInputError
from medi2i.io import load_volume
from medi2i.metrics import (
    RegistrationCase,
    SynthesisCase,
    evaluate_registration,
    evaluate_synthesis,
    registration_cases_from_manifest,
    registration_metrics,
    summarize,
    synthesis_cases_from_manifest,
    synthrad_metrics,
)
from medi2i.spatial import write_ddf
from tests.conftest import oblique_affine

SHAPE = (14, 15, 13)
SPACING = (0.9, 1.1, 2.5)  # oblique_affine's default


def _ct(rng):
    body = np.zeros(SHAPE, bool)
    body[2:-2, 2:-2, 2:-2] = True
    ct = np.where(body, 40 + 200 * ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5), -1000).round()
    return ct.astype(np.int16), body.astype(np.uint8)


@pytest.fixture
def synthesis_files(nifti_factory, rng):
    cases = []
    for i in range(3):
        ct, mask = _ct(rng)
        sct = (ct + (20 + 10 * i) * rng.standard_normal(SHAPE)).astype(np.float32)
        cases.append(
            SynthesisCase(
                f"s{i}",
                nifti_factory(f"s{i}.nii.gz", sct),
                nifti_factory(f"ct{i}.nii.gz", ct),
                nifti_factory(f"mask{i}.nii.gz", mask),
            )
        )
    return cases


def _labels(rng):
    lab = np.zeros(SHAPE, np.int16)
    lab[2:7, 2:8, 2:6] = 1
    lab[7:12, 3:12, 4:10] = 2
    lab[3:6, 9:13, 7:11] = 3
    return lab


@pytest.fixture
def registration_files(nifti_factory, tmp_path, rng):
    cases = []
    for i in range(2):
        fixed = _labels(rng)
        moving = np.roll(fixed, 1, axis=i)
        ddf = np.stack([ndimage.gaussian_filter(rng.standard_normal(SHAPE), 2.0) for _ in range(3)]).astype(np.float32)
        ddf_path = write_ddf(tmp_path / f"disp_p{i}.nii.gz", ddf, oblique_affine())
        cases.append(
            RegistrationCase(
                f"p{i}", ddf_path, nifti_factory(f"f{i}.nii.gz", fixed), nifti_factory(f"m{i}.nii.gz", moving)
            )
        )
    return cases


def _array(path):
    return np.asarray(nib.load(path).dataobj)


def test_evaluate_synthesis_values_and_summary(synthesis_files, tmp_path):
    out = tmp_path / "out"
    result = evaluate_synthesis(synthesis_files, out, preset="ct")
    assert list(result.cases.columns) == ["case_id", "mae", "psnr", "ssim"]
    for case, row in zip(synthesis_files, result.cases.to_dict(orient="records"), strict=True):
        expected = synthrad_metrics(_array(case.pred), _array(case.target), _array(case.mask))
        assert row == {"case_id": case.case_id, **expected}
    mae = result.cases["mae"].to_numpy()
    summary = result.summary.set_index("metric").loc["mae"]
    assert summary["mean"] == np.mean(mae) and summary["std"] == np.std(mae)  # population std
    assert summary["median"] == np.median(mae) and summary["p30"] == np.quantile(mae, 0.3)  # Learn2Reg "30"
    assert sorted(p.name for p in out.iterdir()) == [
        "synthesis_cases.csv",
        "synthesis_summary.csv",
        "synthesis_summary.json",
    ]
    on_disk = pd.read_csv(out / "synthesis_cases.csv")
    assert np.allclose(on_disk["ssim"], result.cases["ssim"], rtol=1e-9)
    payload = json.loads((out / "synthesis_summary.json").read_text())
    assert payload["settings"]["preset"] == "ct" and payload["settings"]["range_hu"] == [-1024.0, 3000.0]
    assert payload["metrics"]["psnr"]["mean"] == pytest.approx(summary_value(result, "psnr", "mean"))


def summary_value(result, metric, column):
    return float(result.summary.set_index("metric").loc[metric, column])


def test_evaluate_registration_values(registration_files, tmp_path):
    result = evaluate_registration(registration_files, tmp_path / "reg")
    for case, row in zip(registration_files, result.cases.to_dict(orient="records"), strict=True):
        ddf = np.moveaxis(_array(case.ddf), -1, 0)
        spacing = load_volume(case.fixed_label, kind="label").spacing  # HD95 in mm uses the loader's spacing
        assert spacing == pytest.approx(SPACING, abs=1e-6)
        expected = registration_metrics(ddf, _array(case.fixed_label), _array(case.moving_label), spacing=spacing)
        assert row == {"case_id": case.case_id, **expected}
    columns = list(result.cases.columns)
    assert columns[:3] == ["case_id", "dice_mean", "hd95_mean"]
    assert columns[-6:] == ["dice_1", "dice_2", "dice_3", "hd95_1", "hd95_2", "hd95_3"]
    assert result.settings["hd95_units"] == "mm"
    l2r = evaluate_registration(registration_files, tmp_path / "reg_l2r", convention="l2r")
    assert l2r.settings["hd95_units"] == "voxel"
    assert (tmp_path / "reg_l2r" / "registration_summary.json").is_file()


def test_manifests_and_prediction_folders(synthesis_files, registration_files, tmp_path):
    root = synthesis_files[0].target.parent
    preds = tmp_path / "preds"
    preds.mkdir()
    lines = ["subject_id,split,source,target,mask"]
    for case in synthesis_files:
        (preds / f"{case.case_id}.nii.gz").write_bytes(case.pred.read_bytes())
        lines.append(f"{case.case_id},test,{case.target.name},{case.target.name},{case.mask.name}")
    (root / "syn.csv").write_text("\n".join(lines) + "\n")
    cases = synthesis_cases_from_manifest(root / "syn.csv", root, pred_dir=preds, split="test")
    assert [c.case_id for c in cases] == ["s0", "s1", "s2"]
    assert evaluate_synthesis(cases, tmp_path / "a").cases.equals(
        evaluate_synthesis(synthesis_files, tmp_path / "b").cases
    )

    lines = ["pair_id,split,fixed,moving,fixed_label,moving_label,ddf"]
    for case in registration_files:
        lines.append(
            f"{case.case_id},val,{case.fixed_label.name},{case.moving_label.name},{case.fixed_label.name},"
            f"{case.moving_label.name},{case.ddf.name}"
        )
    (root / "reg.csv").write_text("\n".join(lines) + "\n")
    by_column = registration_cases_from_manifest(root / "reg.csv", root)
    by_folder = registration_cases_from_manifest(root / "reg.csv", root, pred_dir=root)
    assert [c.ddf for c in by_column] == [c.ddf for c in by_folder] == [c.ddf for c in registration_files]
    with pytest.raises(Medi2iInputError, match="prediction file not found"):
        registration_cases_from_manifest(root / "reg.csv", root, pred_dir=preds)


def test_geometry_mismatch_names_both_files_and_writes_nothing(
    synthesis_files, registration_files, nifti_factory, tmp_path
):
    shifted = oblique_affine(origin=(-80.0, 110.0, -70.0))
    bad_pred = nifti_factory("bad_pred.nii.gz", _array(synthesis_files[1].pred), shifted)
    cases = [synthesis_files[0], SynthesisCase("bad", bad_pred, synthesis_files[1].target, synthesis_files[1].mask)]
    out = tmp_path / "never"
    with pytest.raises(Medi2iInputError) as info:
        evaluate_synthesis(cases, out)
    assert "bad_pred.nii.gz" in str(info.value) and synthesis_files[1].target.name in str(info.value)
    assert not out.exists()

    wrong = write_ddf(tmp_path / "disp_small.nii.gz", np.zeros((3, 5, 5, 5), np.float32), oblique_affine())
    case = registration_files[0]
    with pytest.raises(Medi2iInputError) as info:
        evaluate_registration([RegistrationCase("x", wrong, case.fixed_label, case.moving_label)], out)
    assert "disp_small.nii.gz" in str(info.value) and case.fixed_label.name in str(info.value)
    assert not out.exists()
    with pytest.raises(Medi2iInputError, match="unique"):
        evaluate_synthesis([synthesis_files[0], synthesis_files[0]], out)
    with pytest.raises(Medi2iInputError, match="fixed mask"):
        evaluate_registration(registration_files, out, masked_jacobian=True)
    assert not out.exists()


def test_cli_synthesis_and_registration(synthesis_files, registration_files, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "evaluate",
        "synthesis",
        "--pred",
        *[str(c.pred) for c in synthesis_files],
        "--target",
        *[str(c.target) for c in synthesis_files],
        "--mask",
        *[str(c.mask) for c in synthesis_files],
        "--preset",
        "ct",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3 case(s)" in text and "synthesis_summary.json" in text
    assert list(pd.read_csv(out / "synthesis_cases.csv")["case_id"]) == ["s0", "s1", "s2"]
    case = registration_files[0]
    argv = [
        "evaluate",
        "registration",
        "--ddf",
        str(case.ddf),
        "--fixed-label",
        str(case.fixed_label),
        "--moving-label",
        str(case.moving_label),
        "--labels",
        "1-2",
        "--convention",
        "l2r",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    row = pd.read_csv(out / "registration_cases.csv").iloc[0]
    assert row["case_id"] == "disp_p0" and "dice_3" not in row and not math.isnan(row["dice_2"])


@pytest.mark.parametrize(
    "extra",
    [
        ["--target"],  # one target for one prediction is fine, but here the prediction list has two files
        ["--manifest", "m.csv"],  # explicit files and a manifest together
    ],
)
def test_cli_bad_input_exit_2_and_nothing_written(synthesis_files, tmp_path, capsys, extra):
    out = tmp_path / "never"
    case = synthesis_files[0]
    argv = [
        "evaluate",
        "synthesis",
        "--pred",
        str(case.pred),
        str(case.pred),
        "--target",
        str(case.target),
        "--out",
        str(out),
    ]
    if extra[0] == "--manifest":
        argv += [extra[0], str(tmp_path / extra[1]), "--data-root", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medi2i evaluate: error:")
    assert not out.exists()


def test_cli_help_describes_definitions(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "synthesis", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "[-1024, 3000]" in text and "<subject_id>.nii.gz" in text


@pytest.mark.parametrize(
    ("values", "p30"),
    [
        ([0.7, 0.8, 0.9], float(np.quantile([0.7, 0.8, 0.9], 0.3))),  # finite: exactly numpy's linear quantile
        ([math.inf], math.inf),  # a prediction identical to its reference has PSNR = inf
        ([30.0, math.inf, math.inf], math.inf),
        ([30.0, 40.0, math.inf], 36.0),
    ],
)
def test_summary_p30_stays_defined_with_infinite_cases(values, p30):
    summary = summarize(pd.DataFrame({"case_id": [f"c{i}" for i in range(len(values))], "psnr": values}))
    assert summary.loc[0, "p30"] == p30
    assert summary.loc[0, "median"] == float(np.median(values))


def test_pred_column_is_validated_like_every_manifest_path(synthesis_files, tmp_path):
    case = synthesis_files[0]
    root = case.target.parent
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"subject_id,split,source,target,pred\ns1,test,{case.target.name},{case.target.name},../x.nii.gz\n"
    )
    with pytest.raises(Medi2iInputError, match="column 'pred'"):
        synthesis_cases_from_manifest(manifest, root)
    manifest.write_text(
        f"subject_id,split,source,target,pred\ns1,test,{case.target.name},{case.target.name},{case.pred.name}\n"
    )
    (loaded,) = synthesis_cases_from_manifest(manifest, root)
    assert loaded.pred == case.pred.resolve()


def test_summary_json_is_strict(synthesis_files, tmp_path):
    identical = [SynthesisCase("same", c.target, c.target, c.mask) for c in synthesis_files[:1]]
    evaluate_synthesis(identical, tmp_path / "out", preset="ct")

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    payload = json.loads((tmp_path / "out" / "synthesis_summary.json").read_text(), parse_constant=refuse)
    assert payload["metrics"]["psnr"]["mean"] == "inf" and payload["metrics"]["psnr"]["std"] is None
