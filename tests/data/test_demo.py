"""The embedded demo cohort: geometry, determinism, tissue values, idempotence, manifests, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

import medi2i.cli
import medi2i.data.demo
from medi2i.data import demo_template
from medi2i.data.demo import (
    MANIFEST_NAMES,
    MODALITIES,
    REGISTRATION_COLUMNS,
    SYNTHESIS_COLUMNS,
    default_demo_dir,
    demo_manifest,
    ensure_demo_cohort,
    generate_demo_cohort,
    subject_ddf,
    subject_split,
)
from medi2i.data.demo_simulation import simulate_subject
from medi2i.data.demo_template import TEMPLATE_NOTICE, load_template
from medi2i.errors import Medi2iInputError

REPO = Path(__file__).resolve().parents[2]
N_SUBJECTS = 4  # splits 2 train / 1 val / 1 test
EXPECTED_AFFINE_2MM = np.array(
    [[2.0, 0, 0, -95.5], [0, 2.0, 0, -129.5], [0, 0, 2.0, -71.5], [0, 0, 0, 1]]
)  # fmt: skip


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """One small 2 mm cohort (3D + 2D) shared by the read-only tests."""
    return generate_demo_cohort(tmp_path_factory.mktemp("demo") / "cohort", subjects=N_SUBJECTS, dims=(2, 3), seed=0)


def _load(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in _files(root)}


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _jacobian_determinant(ddf: np.ndarray) -> np.ndarray:
    """det(I + grad u) with numpy central differences: an independent reference, not medi2i code."""
    nd = ddf.shape[0]
    j = [[np.gradient(ddf[c], axis=d) + (c == d) for d in range(nd)] for c in range(nd)]  # j[c][d] = d(x+u)_c/dx_d
    if nd == 2:
        return j[0][0] * j[1][1] - j[0][1] * j[1][0]
    return (
        j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
        - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
        + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0])
    )


# ---------------------------------------------------------------------------------------------
# layout and geometry


def test_layout_dtypes_and_shapes(cohort):
    expected_dtype = {"t1w": np.int16, "t2w": np.int16, "ct": np.int16, "mask": np.uint8, "label": np.uint8}
    for dim, shape in ((3, (96, 112, 96)), (2, (96, 112, 1))):
        names = sorted(p.name for p in (cohort / f"{dim}d").iterdir())
        assert names == sorted(f"sub-{i:03d}_{m}.nii.gz" for i in range(N_SUBJECTS) for m in MODALITIES)
        for modality in MODALITIES:
            img = nib.load(cohort / f"{dim}d" / f"sub-000_{modality}.nii.gz")
            assert img.shape == shape
            assert img.get_data_dtype() == expected_dtype[modality]
    assert sorted(p.name for p in cohort.glob("*.csv")) == sorted(f"{name}.csv" for name in MANIFEST_NAMES)


def test_geometry_is_shared_ras_and_qform_equals_sform(cohort):
    affines = {}
    for path in _files(cohort):
        if not path.name.endswith(".nii.gz"):
            continue
        img = nib.load(path)
        qform, qcode = img.get_qform(coded=True)
        sform, scode = img.get_sform(coded=True)
        assert qcode > 0 and scode > 0, path
        np.testing.assert_allclose(qform, sform, atol=1e-5)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert "ICBM152" in img.header["descrip"].tobytes().decode()  # the McGill notice travels with the file
        affines.setdefault(path.parent.name, []).append(img.affine)
    for dim_affines in affines.values():
        for affine in dim_affines:
            np.testing.assert_array_equal(affine, dim_affines[0])
    np.testing.assert_allclose(affines["3d"][0], EXPECTED_AFFINE_2MM)
    # the 2D files keep the 3D grid, moved to the axial slice nearest MNI z = +12 mm (index 42 -> 12.5 mm)
    expected_2d = EXPECTED_AFFINE_2MM.copy()
    expected_2d[2, 3] = 12.5
    np.testing.assert_allclose(affines["2d"][0], expected_2d)


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_gives_identical_files_whatever_the_cohort_size(cohort, tmp_path):
    # 2D keeps this fast; the 3D path shares the mechanism and is checked array-wise below
    smaller = generate_demo_cohort(tmp_path / "n3", subjects=3, dims=(2,), seed=0)
    for i in range(3):
        for modality in MODALITIES:
            name = f"2d/sub-{i:03d}_{modality}.nii.gz"
            assert _sha(smaller / name) == _sha(cohort / name), name


def test_resimulating_a_3d_subject_gives_the_stored_arrays(cohort):
    subject = simulate_subject(load_template(2.0), 0, 2)
    np.testing.assert_array_equal(_load(cohort / "3d/sub-002_label.nii.gz"), subject.label)
    np.testing.assert_array_equal(_load(cohort / "3d/sub-002_ct.nii.gz"), np.rint(subject.ct).astype(np.int16))
    stored_t2w = _load(cohort / "3d/sub-002_t2w.nii.gz")
    np.testing.assert_array_equal(stored_t2w, np.clip(np.rint(subject.t2w * 1000), 0, 32767).astype(np.int16))


def test_different_seed_gives_different_subjects(cohort, tmp_path):
    other = generate_demo_cohort(tmp_path / "seed1", subjects=3, dims=(2,), seed=1)
    for modality in ("t1w", "ct", "label"):
        a = _load(cohort / "2d" / f"sub-000_{modality}.nii.gz")
        b = _load(other / "2d" / f"sub-000_{modality}.nii.gz")
        assert a.shape == b.shape
        assert np.mean(a != b) > 0.05, modality
    # subjects of one cohort differ from each other too
    assert not np.array_equal(_load(cohort / "3d/sub-000_label.nii.gz"), _load(cohort / "3d/sub-001_label.nii.gz"))


# ---------------------------------------------------------------------------------------------
# tissue content


@pytest.mark.parametrize("dim", [3, 2])
def test_labels_and_mask_agree(cohort, dim):
    for i in range(N_SUBJECTS):
        label = _load(cohort / f"{dim}d" / f"sub-{i:03d}_label.nii.gz")
        mask = _load(cohort / f"{dim}d" / f"sub-{i:03d}_mask.nii.gz")
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4, 5}
        assert set(np.unique(mask).tolist()) == {0, 1}
        np.testing.assert_array_equal(label > 0, mask == 1)  # documented invariant
        assert ndi.label(mask)[1] == 1  # one head, no islands
        assert 0.2 < mask.mean() < 0.8


@pytest.mark.parametrize("dim", [3, 2])
def test_ct_medians_fall_in_tissue_bands(cohort, dim):
    # (low, high) HU for the median of each label class; CSF is 8 HU, raised by partial volume at 2 mm
    bands = {0: (-1010, -990), 1: (0, 25), 2: (25, 50), 3: (20, 40), 4: (600, 2000), 5: (-100, 60)}
    for i in range(N_SUBJECTS):
        ct = _load(cohort / f"{dim}d" / f"sub-{i:03d}_ct.nii.gz").astype(float)
        label = _load(cohort / f"{dim}d" / f"sub-{i:03d}_label.nii.gz")
        medians = {k: float(np.median(ct[label == k])) for k in bands}
        for k, (low, high) in bands.items():
            assert low <= medians[k] <= high, (i, k, medians)
        assert medians[2] > medians[3]  # GM is denser than WM on CT
        assert ct.min() >= -1024 and ct.max() <= 3071


@pytest.mark.parametrize("dim", [3, 2])
def test_mr_contrasts(cohort, dim):
    for i in range(N_SUBJECTS):
        label = _load(cohort / f"{dim}d" / f"sub-{i:03d}_label.nii.gz")
        t1 = _load(cohort / f"{dim}d" / f"sub-{i:03d}_t1w.nii.gz").astype(float)
        t2 = _load(cohort / f"{dim}d" / f"sub-{i:03d}_t2w.nii.gz").astype(float)
        m1 = {k: np.median(t1[label == k]) for k in (0, 1, 2, 3)}
        m2 = {k: np.median(t2[label == k]) for k in (0, 1, 2, 3)}
        assert m1[3] > m1[2] > m1[1] > m1[0], m1  # T1w: WM > GM > CSF > air
        assert m2[1] > m2[2] > m2[3] > m2[0], m2  # T2w: CSF > GM > WM > air
        assert 800 <= m1[3] <= 1200 and 800 <= m2[3] <= 1300  # white matter ~1000 (x1000 scaling)
        assert t1.min() >= 0 and t2.min() >= 0


# ---------------------------------------------------------------------------------------------
# generating fields


@pytest.mark.parametrize("dim", [3, 2])
def test_regenerated_field_is_diffeomorphic(dim):
    for index in range(3):
        ddf = subject_ddf(0, index, spatial_dims=dim)
        assert ddf.shape == ((dim, 96, 112, 96) if dim == 3 else (dim, 96, 112))
        assert ddf.dtype == np.float32 and np.isfinite(ddf).all()
        det = _jacobian_determinant(ddf.astype(np.float64))
        assert det.min() > 0.5 and det.max() < 2.0, (det.min(), det.max())
        assert 0.5 < np.abs(ddf).max() < 20  # a real deformation, a few voxels
        if index == 0:
            np.testing.assert_array_equal(ddf, subject_ddf(0, 0, spatial_dims=dim))


@pytest.mark.parametrize("dim", [3, 2])
def test_regenerated_field_is_the_one_that_made_the_subject(cohort, dim):
    """Pulling the template's WM with subject k's field reproduces subject k's WM label, not subject j's."""
    template = load_template(2.0)
    template = template if dim == 3 else template.axial_slice()
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in template.shape], indexing="ij"))
    warped_wm = [ndi.map_coordinates(template.wm, grid + subject_ddf(0, j, spatial_dims=dim), order=1) > 0.5
                 for j in (0, 1)]  # fmt: skip

    def dice(a, b):
        return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))

    for k in (0, 1):
        wm_label = _load(cohort / f"{dim}d" / f"sub-{k:03d}_label.nii.gz").reshape(template.shape) == 3
        scores = [dice(warped, wm_label) for warped in warped_wm]
        assert scores[k] > 0.95 and scores[k] > scores[1 - k] + 0.1, scores


def test_subject_ddf_rejects_bad_arguments():
    with pytest.raises(Medi2iInputError, match="index"):
        subject_ddf(0, -1)
    with pytest.raises(Medi2iInputError, match="dims"):
        subject_ddf(0, 0, spatial_dims=4)
    with pytest.raises(Medi2iInputError, match="resolution"):
        subject_ddf(0, 0, resolution=3.0)


# ---------------------------------------------------------------------------------------------
# idempotence and safety of the destination


def test_second_call_verifies_and_skips(cohort):
    before = _mtimes(cohort)
    assert generate_demo_cohort(cohort, subjects=N_SUBJECTS, dims=(3, 2), seed=0) == cohort
    assert _mtimes(cohort) == before
    record = json.loads((cohort / "cohort.json").read_text())
    assert record["recipe"] and record["seed"] == 0 and record["subjects"] == N_SUBJECTS and record["dims"] == [2, 3]
    listed = set(record["files"])
    assert listed == {str(p.relative_to(cohort)) for p in _files(cohort)} - {"cohort.json"}
    assert all(record["files"][name] == _sha(cohort / name) for name in listed)


@pytest.mark.parametrize(
    "kwargs", [{"seed": 1}, {"subjects": 5}, {"dims": (3,)}, {"resolution": 1.0}], ids=["seed", "n", "dims", "res"]
)
def test_other_parameters_on_an_existing_cohort_raise(cohort, kwargs):
    before = _mtimes(cohort)
    params = {"subjects": N_SUBJECTS, "dims": (2, 3), "seed": 0} | kwargs
    with pytest.raises(Medi2iInputError, match="other parameters"):
        generate_demo_cohort(cohort, **params)
    assert _mtimes(cohort) == before


def test_altered_or_missing_files_are_regenerated(tmp_path):
    root = generate_demo_cohort(tmp_path / "c", subjects=3, dims=(2,), seed=0)
    record = json.loads((root / "cohort.json").read_text())
    before = _mtimes(root)
    altered, missing = root / "2d/sub-001_ct.nii.gz", root / "2d/sub-002_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((96, 112, 1), np.int16), np.eye(4)), altered)
    missing.unlink()
    (root / "registration_2d.csv").write_text("pair_id\n")
    generate_demo_cohort(root, subjects=3, dims=(2,), seed=0)
    for name in ("2d/sub-001_ct.nii.gz", "2d/sub-002_mask.nii.gz", "registration_2d.csv"):
        assert _sha(root / name) == record["files"][name], name
    after = _mtimes(root)
    untouched = [name for name in before if name.startswith("2d/sub-000")]
    assert untouched and all(after[name] == before[name] for name in untouched)  # only damaged subjects rewritten


def test_interrupted_run_is_completed_and_leftovers_removed(tmp_path):
    root = generate_demo_cohort(tmp_path / "c", subjects=3, dims=(2,), seed=0)
    reference = {name: _sha(root / name) for name in json.loads((root / "cohort.json").read_text())["files"]}
    # what a killed run with other parameters would leave: no cohort.json, a temp file, an extra subject
    (root / "cohort.json").unlink()
    (root / "2d" / ".sub-000_t1w.nii.gz.abc.part.nii.gz").write_bytes(b"partial")
    (root / "2d" / "sub-007_t1w.nii.gz").write_bytes(b"stale")
    generate_demo_cohort(root, subjects=3, dims=(2,), seed=0)
    assert (root / "cohort.json").is_file()
    assert {name: _sha(root / name) for name in reference} == reference
    assert sorted(p.name for p in (root / "2d").iterdir()) == sorted(
        f"sub-{i:03d}_{m}.nii.gz" for i in range(3) for m in MODALITIES
    )


def test_overwrite_replaces_a_cohort_and_keeps_foreign_files(tmp_path):
    root = generate_demo_cohort(tmp_path / "c", subjects=4, dims=(2,), seed=0)
    (root / "notes.txt").write_text("mine")
    generate_demo_cohort(root, subjects=3, dims=(2,), seed=1, overwrite=True)
    record = json.loads((root / "cohort.json").read_text())
    assert (record["subjects"], record["seed"]) == (3, 1)
    assert not (root / "2d" / "sub-003_t1w.nii.gz").exists()
    assert (root / "notes.txt").read_text() == "mine"


def test_foreign_folder_is_refused_without_writing(tmp_path):
    (tmp_path / "thesis.docx").write_text("not a cohort")
    with pytest.raises(Medi2iInputError, match="no demo cohort"):
        generate_demo_cohort(tmp_path, subjects=3, dims=(2,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.docx"]
    with pytest.raises(Medi2iInputError, match="is a file"):
        generate_demo_cohort(tmp_path / "thesis.docx", subjects=3, dims=(2,))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subjects": 2},
        {"subjects": True},
        {"subjects": 3.0},
        {"resolution": 3.0},
        {"resolution": 1.5},
        {"dims": ()},
        {"dims": (4,)},
        {"dims": (3, 3)},
        {"dims": "3"},
        {"seed": -1},
        {"seed": 0.5},
    ],
)
def test_invalid_parameters_raise_before_writing(tmp_path, kwargs):
    with pytest.raises(Medi2iInputError, match=next(iter(kwargs))):
        generate_demo_cohort(tmp_path / "c", **({"subjects": 3} | kwargs))
    assert not (tmp_path / "c").exists()


def test_missing_nilearn_or_template_is_a_clear_error(tmp_path, monkeypatch):
    real_find_spec = demo_template.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "nilearn" else real_find_spec(name, *args)

    monkeypatch.setattr(demo_template.importlib.util, "find_spec", find_spec)
    with pytest.raises(Medi2iInputError, match="nilearn"):
        generate_demo_cohort(tmp_path / "c", subjects=3, dims=(2,))
    assert not (tmp_path / "c").exists()
    monkeypatch.setattr(demo_template.importlib.util, "find_spec", real_find_spec)
    monkeypatch.setitem(demo_template.TEMPLATE_FILES, "t1", "mni_icbm152_t1_missing.nii.gz")
    with pytest.raises(Medi2iInputError, match="mni_icbm152_t1_missing"):
        demo_template.template_dir()


def test_copyright_notice_travels_with_the_cohort(cohort):
    assert TEMPLATE_NOTICE in (cohort / "NOTICE.txt").read_text()
    assert " ".join(TEMPLATE_NOTICE.split()) in " ".join(medi2i.data.demo.__doc__.split())
    assert "1993-2009 Louis Collins" in TEMPLATE_NOTICE and TEMPLATE_NOTICE.endswith("this software package.")


def test_template_is_located_without_importing_nilearn():
    code = (
        "import sys; from medi2i.data.demo_template import template_dir; folder = template_dir(); "
        "assert 'nilearn' not in sys.modules, 'nilearn was imported'; print(folder.parts[-3:])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "('nilearn', 'datasets', 'data')" in result.stdout


# ---------------------------------------------------------------------------------------------
# manifests


@pytest.mark.parametrize("dim", [3, 2])
def test_synthesis_manifests(cohort, dim):
    for view, target in (("synthesis_t1w_t2w", "t2w"), ("synthesis_mr_ct", "ct")):
        columns, rows = _read_csv(cohort / f"{view}_{dim}d.csv")
        assert columns == list(SYNTHESIS_COLUMNS)
        assert [r["subject_id"] for r in rows] == [f"sub-{i:03d}" for i in range(N_SUBJECTS)]
        assert [r["split"] for r in rows] == ["train", "train", "val", "test"]
        for row in rows:
            sid = row["subject_id"]
            assert row["source"] == f"{dim}d/{sid}_t1w.nii.gz" and row["target"] == f"{dim}d/{sid}_{target}.nii.gz"
            assert (row["mask"], row["label"]) == (f"{dim}d/{sid}_mask.nii.gz", f"{dim}d/{sid}_label.nii.gz")
            assert (row["site"], row["anatomy"]) == ("demo", "brain")
            for column in ("source", "target", "mask", "label"):
                assert not Path(row[column]).is_absolute() and (cohort / row[column]).is_file()


def test_registration_manifest_pairs_stay_inside_a_split(tmp_path):
    root = generate_demo_cohort(tmp_path / "c", subjects=6, dims=(2,), seed=0)  # 2 / 2 / 2
    columns, rows = _read_csv(root / "registration_2d.csv")
    assert columns == list(REGISTRATION_COLUMNS)
    pairs = [(r["split"], r["fixed"].split("/")[1][:7], r["moving"].split("/")[1][:7]) for r in rows]
    assert pairs == [
        ("train", "sub-000", "sub-001"),
        ("val", "sub-002", "sub-003"),
        ("test", "sub-004", "sub-005"),
    ]
    for row in rows:
        assert row["pair_id"] == f"{row['fixed'][3:10]}_{row['moving'][3:10]}"
        assert row["fixed"].endswith("_t1w.nii.gz") and row["moving"].endswith("_t1w.nii.gz")
        assert row["fixed_label"] == row["fixed"].replace("t1w", "label")
        assert row["moving_mask"] == row["moving"].replace("t1w", "mask")
        for column in REGISTRATION_COLUMNS[2:]:
            assert (root / row[column]).is_file()


def test_splits_and_ring_pairs_for_the_default_size(cohort):
    splits = [subject_split(i, 10) for i in range(10)]
    assert splits == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert [subject_split(i, 3) for i in range(3)] == ["train", "val", "test"]
    _, rows = _read_csv(cohort / "registration_3d.csv")  # 4 subjects: only train has two
    assert [(r["pair_id"], r["split"]) for r in rows] == [("sub-000_sub-001", "train")]


# ---------------------------------------------------------------------------------------------
# ensure / default folder / manifest lookup


def test_ensure_and_demo_manifest_use_an_existing_cohort(cohort, monkeypatch):
    monkeypatch.setenv("MEDI2I_DEMO_DIR", str(cohort))
    assert default_demo_dir() == cohort
    before = _mtimes(cohort)
    assert ensure_demo_cohort() == cohort  # a 4-subject cohort is accepted when nothing else is asked
    assert demo_manifest("synthesis_mr_ct_3d") == cohort / "synthesis_mr_ct_3d.csv"
    assert demo_manifest("registration_2d.csv", out=cohort) == cohort / "registration_2d.csv"
    assert _mtimes(cohort) == before
    with pytest.raises(Medi2iInputError, match="other parameters"):
        ensure_demo_cohort(seed=3)
    with pytest.raises(Medi2iInputError, match="synthesis_t1w_t2w_3d"):
        demo_manifest("synthesis_t1w_t2w")
    with pytest.raises(TypeError, match="subject"):
        ensure_demo_cohort(subject=3)


def test_default_demo_dir_without_environment(monkeypatch):
    monkeypatch.delenv("MEDI2I_DEMO_DIR", raising=False)
    assert default_demo_dir() == Path.home() / ".cache" / "medi2i" / "demo"


def test_ensure_generates_when_absent_and_manifest_needs_its_part(tmp_path):
    root = ensure_demo_cohort(tmp_path / "new", subjects=3, dims=(2,), progress=False)
    assert (root / "cohort.json").is_file() and (root / "synthesis_t1w_t2w_2d.csv").is_file()
    with pytest.raises(Medi2iInputError, match="no 3D part"):
        demo_manifest("registration_3d", out=root)


# ---------------------------------------------------------------------------------------------
# command line


@pytest.fixture
def demo_cli(monkeypatch):
    # only this subcommand: the others are tested in tests/cli and must not break these tests
    monkeypatch.setattr(medi2i.cli, "SUBCOMMANDS", {"demo-data": "medi2i.cli.demo_data"})
    return medi2i.cli.main


def test_cli_writes_a_2d_cohort(demo_cli, tmp_path, capsys):
    out = tmp_path / "cli"
    assert demo_cli(["demo-data", "--out", str(out), "--subjects", "3", "--dims", "2"]) == 0
    stdout = capsys.readouterr().out
    assert str(out) in stdout and "3 subjects" in stdout
    assert not (out / "3d").exists()
    assert len(list((out / "2d").glob("*.nii.gz"))) == 3 * len(MODALITIES)
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(f"{n}.csv" for n in MANIFEST_NAMES if n.endswith("2d"))
    assert json.loads((out / "cohort.json").read_text())["dims"] == [2]


@pytest.mark.parametrize(
    "argv",
    [
        ["--subjects", "1"],
        ["--subjects", "many"],
        ["--dims", "4"],
        ["--dims", "2,2"],
        ["--resolution", "3"],
        ["--resolution", "fine"],
        ["--seed", "-2"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line_and_write_nothing(demo_cli, tmp_path, capsys, argv):
    out = tmp_path / "cli"
    assert demo_cli(["demo-data", "--out", str(out), "--dims", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medi2i demo-data: error: ") and len(err.strip().splitlines()) == 1
    assert argv[0].lstrip("-") in err
    assert not out.exists()


def test_cli_help_describes_the_options(demo_cli, capsys):
    with pytest.raises(SystemExit) as info:
        demo_cli(["demo-data", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--out DIR", "--subjects N", "--resolution {1,2}", "--dims 2,3", "--seed S", "--overwrite"):
        assert needle in text
    assert "MEDI2I_DEMO_DIR" in text and "McGill" in text


# ---------------------------------------------------------------------------------------------
# 1 mm (opt-in)


def test_one_millimetre_axial_slices(tmp_path):
    root = generate_demo_cohort(tmp_path / "c1", subjects=3, dims=(2,), resolution=1.0, seed=0)
    img = nib.load(root / "2d" / "sub-000_t1w.nii.gz")
    assert img.shape == (192, 224, 1)
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(img.affine[:3, 3], (-96.0, -130.0, 12.0))
    label = _load(root / "2d" / "sub-000_label.nii.gz")
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4, 5}


@pytest.mark.slow
def test_one_millimetre_volumes(tmp_path):
    root = generate_demo_cohort(tmp_path / "c1", subjects=3, dims=(3,), resolution=1.0, seed=0)
    img = nib.load(root / "3d" / "sub-000_ct.nii.gz")
    assert img.shape == (192, 224, 192)
    np.testing.assert_allclose(img.affine[:3, 3], (-96.0, -130.0, -72.0))
    det = _jacobian_determinant(subject_ddf(0, 0, resolution=1.0).astype(np.float64))
    assert det.min() > 0.5
