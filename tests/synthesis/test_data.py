"""Partially paired slice batches, pool splits, fitting to the model size, loading slices from manifests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.data import (
    PartiallyPairedSliceDataset,
    SubjectSlices,
    fit_slices,
    load_subject_slices,
    split_pools,
    unfit_slices,
    validation_slices,
)
from tests.conftest import oblique_affine, write_nifti


def _subjects(n: int, slices: int = 5, size: int = 4) -> list[SubjectSlices]:
    # slice k of subject s holds the code s*100+k in A and its negative in B: rows decode to (subject, slice)
    out = []
    for s in range(n):
        codes = torch.arange(slices, dtype=torch.float32) + 100 * s
        a = codes[:, None, None, None].expand(slices, 1, size, size).clone()
        out.append(SubjectSlices(f"s{s}", a, -a, np.arange(slices)))
    return out


def _decode(x: torch.Tensor) -> tuple[int, int]:
    code = int(abs(float(x.flatten()[0])))
    return code // 100, code % 100


@pytest.mark.parametrize(("ratio", "expected"), [(0.01, 1), (0.1, 1), (0.5, 5), (1.0, 10)])
def test_split_pools_sizes_and_disjoint(ratio: float, expected: int) -> None:
    paired, unpaired = split_pools(10, ratio, seed=3)
    assert len(paired) == expected
    assert set(paired).isdisjoint(unpaired) and sorted(paired + unpaired) == list(range(10))
    assert split_pools(10, ratio, seed=3) == (paired, unpaired)  # split once, reproducibly


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_partial_batches_have_equal_halves_from_the_right_pools(ratio: float) -> None:
    ds = PartiallyPairedSliceDataset(_subjects(10), batch_size=8, pairing_ratio=ratio, batches_per_epoch=5, seed=1)
    for index in range(5):
        batch = ds[index]
        assert batch["paired"].tolist() == [True] * 4 + [False] * 4
        for row in range(8):
            sa, ka = _decode(batch["a"][row])
            sb, kb = _decode(batch["b"][row])
            if row < 4:  # a real pair: same subject, same slice, from the paired pool
                assert (sa, ka) == (sb, kb) and sa in ds.paired_pool
            else:  # unpaired: A and B from two different subjects of the unpaired pool
                assert sa != sb and sa in ds.unpaired_pool and sb in ds.unpaired_pool


def test_full_pairing_and_determinism_per_epoch() -> None:
    ds = PartiallyPairedSliceDataset(_subjects(4), batch_size=3, pairing_ratio=1.0, batches_per_epoch=2, seed=0)
    first = ds[1]
    assert first["paired"].all() and torch.equal(first["a"], -first["b"])
    assert torch.equal(ds[1]["a"], first["a"])  # a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["a"], first["a"])
    ds.set_epoch(0)
    assert torch.equal(ds[1]["a"], first["a"])


def test_dataset_rejects_bad_settings() -> None:
    with pytest.raises(Medi2iInputError, match="unpaired"):
        PartiallyPairedSliceDataset(_subjects(2), batch_size=4, pairing_ratio=0.5)
    with pytest.raises(ValueError, match="even"):
        PartiallyPairedSliceDataset(_subjects(6), batch_size=3, pairing_ratio=0.5)
    with pytest.raises(ValueError, match="pairing_ratio"):
        PartiallyPairedSliceDataset(_subjects(6), batch_size=4, pairing_ratio=0.0)


def test_fit_and_unfit_slices() -> None:
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(2, 1, 5, 7)
    padded = fit_slices(x, (8, 9))
    assert padded.shape == (2, 1, 8, 9)
    assert torch.equal(padded[:, :, 1:6, 1:8], x) and float(padded[0, 0, 0, 0]) == -1.0
    assert torch.equal(unfit_slices(padded, (5, 7)), x)
    cropped = fit_slices(x, (3, 7))
    back = unfit_slices(cropped, (5, 7))
    assert torch.equal(back[:, :, 1:4], x[:, :, 1:4]) and bool((back[:, :, 0] == -1).all())
    assert fit_slices(x, (10, 14), mode="resize").shape == (2, 1, 10, 14)
    assert unfit_slices(fit_slices(x, (10, 14), mode="resize"), (5, 7), mode="resize").shape == x.shape


def test_load_subject_slices_reads_the_axial_axis_from_the_affine(tmp_path) -> None:
    # array axis 0 runs superior-inferior: 6 axial slices of (4, 5) voxels
    perm = np.zeros((4, 4))
    perm[2, 0] = perm[0, 1] = perm[1, 2] = perm[3, 3] = 1.0
    affine = oblique_affine() @ perm
    ct = np.full((6, 4, 5), 988.0, dtype=np.float32)  # the middle of the HU window -> 0
    mr = np.random.default_rng(0).uniform(10, 100, size=(6, 4, 5)).astype(np.float32)
    row = {
        "subject_id": "x",
        "source": str(write_nifti(tmp_path / "mr.nii.gz", mr, affine)),
        "target": str(write_nifti(tmp_path / "ct.nii.gz", ct, affine)),
    }
    (subject,) = load_subject_slices([row], model_size=(4, 5), min_foreground=0.0)
    assert subject.source.shape == (6, 1, 4, 5) and subject.target.shape == (6, 1, 4, 5)
    assert torch.allclose(subject.target, torch.zeros(1))
    assert float(subject.source.min()) == -1.0 and float(subject.source.max()) == 1.0
    val = validation_slices([subject], slices_per_subject=3)
    assert val["a"].shape == (3, 1, 4, 5)
