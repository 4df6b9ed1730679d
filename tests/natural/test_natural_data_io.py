"""medi2i.natural.data: image file round trips (png, NIfTI geometry), error cases, and manifest/demo slice sets
(on a tiny synthesis cohort written here, so no demo generation is needed)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.natural.data.defaults import demo_exemplar_slices, demo_semantic_slices, demo_unpaired_slices
from medi2i.natural.data.image_io import read_image, write_image
from tests.conftest import oblique_affine, write_nifti

# --------------------------------------------------------------------------------------------
# png / jpg


def test_png_round_trip_rgb_grey_16bit_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "in.png")
    x, meta = read_image(tmp_path / "in.png")
    assert x.shape == (3, 9, 13) and meta["channels"] == 3 and float(x.min()) >= -1 and float(x.max()) <= 1
    write_image(tmp_path / "out" / "rgb.png", x, meta)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "rgb.png")), rgb)  # 8-bit exact

    grey16 = rng.integers(0, 65536, (7, 5), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    g, gmeta = read_image(tmp_path / "g16.png")
    assert g.shape == (1, 7, 5) and gmeta["bit_depth"] == 16
    write_image(tmp_path / "g16_out.png", g, gmeta)
    assert np.abs(np.asarray(Image.open(tmp_path / "g16_out.png")).astype(int) - grey16).max() <= 1

    labels = rng.integers(0, 5, (6, 6)).astype(np.uint8)
    Image.fromarray(labels).save(tmp_path / "lab.png")
    lab, lmeta = read_image(tmp_path / "lab.png", label=True)
    assert lab.dtype == torch.int64 and torch.equal(lab[0], torch.from_numpy(labels.astype(np.int64)))
    write_image(tmp_path / "lab_out.png", lab, lmeta)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "lab_out.png")), labels)

    palette = Image.fromarray(labels)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * 753)
    palette.save(tmp_path / "lab_p.png")  # a VOC-style palette label map: ids are the palette indices
    assert torch.equal(read_image(tmp_path / "lab_p.png", label=True)[0], lab)

    write_image(tmp_path / "x.jpg", x)
    assert read_image(tmp_path / "x.jpg")[0].shape == (3, 9, 13)


def test_image_io_errors(tmp_path):
    with pytest.raises(Medi2iInputError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(Medi2iInputError, match="cannot read"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(Medi2iInputError, match="unsupported image format"):
        read_image(tmp_path / "x.webm")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(Medi2iInputError, match="regular file"):
        read_image(tmp_path / "folder.png")
    with pytest.raises(Medi2iInputError, match="1 or 3 channels"):
        write_image(tmp_path / "two.png", torch.zeros(2, 4, 4))
    with pytest.raises(Medi2iInputError, match="NaN"):
        write_image(tmp_path / "nan.png", torch.full((1, 4, 4), float("nan")))
    with pytest.raises(Medi2iInputError, match="geometry"):
        write_image(tmp_path / "v.nii.gz", torch.zeros(1, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "folder.png"]  # nothing written


# --------------------------------------------------------------------------------------------
# NIfTI


def test_nifti_stack_round_trip_keeps_geometry(tmp_path):
    affine = oblique_affine()
    volume = np.random.default_rng(1).uniform(0.0, 900.0, (6, 7, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "t1.nii.gz", volume, affine)
    x, meta = read_image(path, modality="minmax")
    assert x.shape == (5, 1, 6, 7) and meta["slice_axis"] == 2  # axial slices along z
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    out = write_image(tmp_path / "out.nii.gz", x, meta)
    written = nib.load(out)
    source = nib.load(path)
    assert np.array_equal(written.affine, source.affine)  # bit-identical geometry
    # the qform is re-derived from the affine as a float32 quaternion: equal to float32 precision
    assert np.allclose(written.get_qform(), source.get_qform(), atol=1e-6)
    assert written.shape == source.shape
    assert np.allclose(written.get_fdata(), volume, atol=1e-3)  # values back on the input's scale

    mr, mr_meta = read_image(path)  # MR preset: foreground percentiles
    assert mr_meta["modality"] == "mr" and float(mr.min()) >= -1 and float(mr.max()) <= 1
    from medi2i.data.intensity import CTWindow

    ct_out = write_image(tmp_path / "ct.nii.gz", torch.zeros_like(mr), mr_meta, intensity=CTWindow().mapping)
    assert np.allclose(nib.load(ct_out).get_fdata(), 988.0)  # 0 in [-1, 1] is the window centre in HU

    flat = write_nifti(tmp_path / "slice.nii.gz", volume[:, :, :1], affine)
    s, smeta = read_image(flat, modality="minmax")
    assert s.shape == (1, 6, 7) and smeta["slice_axis"] is None
    assert np.array_equal(nib.load(write_image(tmp_path / "s.nii.gz", s, smeta)).affine, nib.load(flat).affine)
    with pytest.raises(Medi2iInputError, match="reference grid"):
        write_image(tmp_path / "bad.nii.gz", x[:3], meta)


def test_nifti_labels_and_sagittal_stacks(tmp_path):
    labels = np.random.default_rng(2).integers(0, 4, (5, 6, 4)).astype(np.uint8)
    sagittal = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)  # z stored first
    path = write_nifti(tmp_path / "lab.nii.gz", labels, sagittal)
    lab, meta = read_image(path, label=True)
    assert meta["slice_axis"] == 1 and lab.shape == (6, 1, 5, 4) and lab.dtype == torch.int64
    out = write_image(tmp_path / "lab_out.nii.gz", lab, meta)
    assert np.array_equal(np.asarray(nib.load(out).dataobj), labels)


# --------------------------------------------------------------------------------------------
# slices from a synthesis manifest (a tiny cohort with the demo layout)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    zz = np.arange(8)[None, None, :]
    rows = []
    for i in range(4):
        rng = np.random.default_rng(i)
        label = np.zeros((12, 14, 8), np.uint8)
        label[2:10, 2:12, 1:7] = 3
        label[4:8, 4:10, 2:6] = 2
        label[5:7, 6:8, 3:5] = 1
        mask = (label > 0).astype(np.uint8)
        t1 = np.where(label > 0, 200.0 * label + rng.normal(0, 5, label.shape) + zz, 0).astype(np.float32)
        t2 = np.where(label > 0, 900.0 - 200.0 * label + rng.normal(0, 5, label.shape), 0).astype(np.float32)
        ct = np.where(label > 0, 40.0 * label, -1000.0).astype(np.float32)
        for name, arr in (("t1w", t1), ("t2w", t2), ("ct", ct), ("mask", mask), ("label", label)):
            write_nifti(root / f"sub-{i}_{name}.nii.gz", arr, affine)
        rows.append(f"sub-{i},train,sub-{i}_t1w.nii.gz,sub-{i}_{{}}.nii.gz,sub-{i}_mask.nii.gz,sub-{i}_label.nii.gz")
    header = "subject_id,split,source,target,mask,label\n"
    for pair, target in (("t1w_t2w", "t2w"), ("mr_ct", "ct")):
        (root / f"synthesis_{pair}_3d.csv").write_text(header + "\n".join(r.format(target) for r in rows) + "\n")
    return root


def test_unpaired_slices_from_a_manifest(tiny_cohort):
    ds = demo_unpaired_slices(manifest=tiny_cohort / "synthesis_t1w_t2w_3d.csv", size=(16, 16), min_foreground=0.2)
    a_subjects = {ds[i]["A_path"].split(":")[0] for i in range(len(ds))}
    b_subjects = {ds.b_items[j]["B_path"].split(":")[0] for j in range(len(ds.b_items))}
    assert a_subjects == {"sub-0", "sub-2"} and b_subjects == {"sub-1", "sub-3"}  # disjoint anatomy
    item = ds[0]
    assert item["A"].shape == item["B"].shape == (1, 16, 16)
    assert float(item["A"].min()) == -1.0 and float(item["A"].max()) <= 1.0  # padded background -1
    slices = {int(ds.a_items[i]["A_path"].split("=")[1]) for i in range(len(ds.a_items))}
    assert slices == set(range(1, 7))  # empty slices (z = 0, 7) dropped
    ct = demo_unpaired_slices("mr_ct", manifest=tiny_cohort / "synthesis_mr_ct_3d.csv", size=(16, 16))
    b = torch.stack([ct.b_items[j]["B"] for j in range(len(ct.b_items))])
    expected = (-1000.0 + 1024.0) / 4024.0 * 2 - 1  # CT window preset
    assert torch.isclose(b[:, 0, 8, 1], torch.tensor(expected)).all()


def test_semantic_and_exemplar_slices(tiny_cohort):
    manifest = tiny_cohort / "synthesis_t1w_t2w_3d.csv"
    ds = demo_semantic_slices(manifest=manifest, size=(16, 16), train=False)
    assert ds.label_mapping == {0: 0, 1: 1, 2: 2, 3: 3} and ds.num_classes == 4
    item = ds[3]
    assert item["label"].dtype == torch.int64 and item["label"].shape == (1, 16, 16)
    inside = item["image"][item["label"] > 0]
    assert float(item["image"][item["label"] == 0].max()) == -1.0 and float((inside > -1.0).float().mean()) > 0.9
    by_class = [float(item["image"][item["label"] == k].mean()) for k in (1, 2, 3) if (item["label"] == k).any()]
    assert by_class == sorted(by_class)  # T1 brighter with the class id, as written
    ex = demo_exemplar_slices(manifest=manifest, contrast="t2w", size=(16, 16), pseudo_pair_prob=1.0)[0]
    assert bool(ex["pseudo_pair"]) and ex["exemplar"].shape == (1, 16, 16)
    small = demo_semantic_slices(manifest=manifest, size=(8, 8), fit="resize", train=False)[2]
    assert small["image"].shape == (1, 8, 8) and set(small["label"].unique().tolist()) <= {0, 1, 2, 3}
    assert int((small["label"] == 3).sum()) > 10  # the whole slice resampled (a centre crop would be all tissue)
    assert int((small["label"] == 0).sum()) > 10
    with pytest.raises(Medi2iInputError, match="contrast"):
        demo_semantic_slices(manifest=manifest, contrast="flair")


@pytest.mark.slow
def test_real_demo_cohort_slice_sets(tmp_path_factory):
    """The real demo cohort (generated here, ~1 minute on 2 shared cores): T1w/T2w and MR/CT unpaired slices, the
    6 tissue labels with the identity mapping, exemplar pairs."""
    from medi2i.data.demo import ensure_demo_cohort

    root = ensure_demo_cohort(tmp_path_factory.mktemp("demo"), subjects=4, dims=(3,), progress=False)
    unpaired = demo_unpaired_slices(root=root, split="train")
    item = unpaired[0]
    assert item["A"].shape == item["B"].shape == (1, 128, 128) and item["A_path"].startswith("sub-000:t1w")
    ct = demo_unpaired_slices("mr_ct", root=root, split="train")
    assert ct[0]["B_path"].startswith("sub-001:ct")
    semantic = demo_semantic_slices(root=root, split="train", train=False)
    assert semantic.label_mapping == {k: k for k in range(6)} and semantic.num_classes == 6
    labels = torch.stack([semantic[i]["label"] for i in range(0, len(semantic), 7)])
    assert set(labels.unique().tolist()) == set(range(6))
    exemplar = demo_exemplar_slices(root=root, split="train")[1]
    assert exemplar["exemplar_label"].dtype == torch.int64


def test_slice_transforms_load_nifti_slices_with_presets(tmp_path):
    from medi2i.natural.data.transforms import slice_transforms

    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    mr = np.zeros((10, 12, 1), np.float32)
    mr[2:8, 2:10, 0] = np.linspace(100, 500, 48, dtype=np.float32).reshape(6, 8)
    labels = (mr > 0).astype(np.uint8) * 3
    paths = {"image": write_nifti(tmp_path / "mr.nii.gz", mr, affine),
             "ct": write_nifti(tmp_path / "ct.nii.gz", np.full((10, 12, 1), 988.0, np.float32), affine),
             "label": write_nifti(tmp_path / "lab.nii.gz", labels, affine)}  # fmt: skip
    t = slice_transforms(("image", "ct"), size=(12, 12), label_keys="label", modality={"image": "mr", "ct": "ct"})
    out = t.set_random_state(0)({k: str(v) for k, v in paths.items()})
    assert out["image"].shape == out["ct"].shape == out["label"].shape == (1, 12, 12)
    assert not hasattr(out["image"], "meta")  # plain tensors in batches
    assert torch.allclose(out["ct"][:, 1:11], torch.zeros(1, 10, 12))  # 988 HU = window centre
    inside, outside = out["image"][out["label"] == 3], out["image"][out["label"] == 0]
    assert inside.numel() == 48 and bool((outside == -1.0).all())  # MR background -1; label follows the image
    assert float((inside > -1.0).float().mean()) > 0.95  # only the 0.5-percentile voxel sits at -1
    with pytest.raises(Medi2iInputError, match="file not found"):
        t({"image": str(tmp_path / "none.nii.gz"), "ct": str(paths["ct"]), "label": str(paths["label"])})
