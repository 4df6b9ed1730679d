"""medi2i.natural.data: transforms (labels aligned, ranges), datasets (sampling, determinism), synthetic tasks,
offline default photos."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.natural.data import datasets, synthetic
from medi2i.natural.data.datasets import (
    ExemplarPairDataset,
    PairedDataset,
    SingleImageDataset,
    UnpairedDataset,
    item_seed,
)
from medi2i.natural.data.transforms import photo_transforms, slice_transforms


def _coded_image(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image whose red channel encodes the column and whose label is column // 8 (so any crop/flip of
    the pair can be checked for alignment)."""
    cols = np.tile(np.arange(w), (h, 1))
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = (cols * 255 // (w - 1)).astype(np.uint8)
    image[..., 1] = 128
    return image, (cols // 8).astype(np.int64)


# --------------------------------------------------------------------------------------------
# transforms


def test_photo_transforms_shapes_range_and_label_alignment():
    image, label = _coded_image(40, 64)
    t = photo_transforms("image", label_keys="label", load_size=64, crop_size=32)
    flipped = 0
    for seed in range(12):
        out = t.set_random_state(seed)({"image": image, "label": label})
        x, y = out["image"], out["label"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert y.shape == (1, 32, 32) and y.dtype == torch.int64
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
        assert torch.allclose(x[1], torch.full_like(x[1], 128 / 127.5 - 1), atol=0.02)  # constant channel kept
        # label = column band; image red channel increases with the column: same direction in both
        red, lab = x[0].mean(0), y[0].float().mean(0)
        corr = torch.corrcoef(torch.stack([red, lab]))[0, 1]
        assert corr > 0.95, corr
        flipped += bool(red[0] > red[-1])
        assert set(y.unique().tolist()) <= set(range(8))  # nearest resize: no invented classes
    assert 2 <= flipped <= 10  # the flip is random (p = 0.5), shared by image and label


def test_photo_transforms_eval_is_plain_resize_and_multiple_of_four():
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    t = photo_transforms("A", load_size=40, crop_size=32, train=False)
    a, b = t({"A": image})["A"], t.set_random_state(5)({"A": image})["A"]
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    none = photo_transforms("A", preprocess="none")({"A": image[:30, :50]})["A"]
    assert none.shape == (3, 32, 48)  # round(7.5) = 8, round(12.5) = 12: Python rounding, as the official code
    grey = photo_transforms("A", preprocess="none", channels=3)({"A": image[..., 0]})["A"]
    assert grey.shape[0] == 3 and torch.equal(grey[0], grey[2])


def test_photo_transforms_reject_bad_arguments_and_values():
    with pytest.raises(ValueError, match="load_size"):
        photo_transforms("A", load_size=100, crop_size=128)
    with pytest.raises(ValueError, match="overlap"):
        photo_transforms("A", label_keys="A")
    with pytest.raises(ValueError, match="resize_and_crop"):
        photo_transforms("A", preprocess="resize_crop")
    with pytest.raises(Medi2iInputError, match=r"\[-1, 1\]"):
        photo_transforms("A", preprocess="none")({"A": np.full((3, 8, 8), 3.0, np.float32)})
    with pytest.raises(Medi2iInputError, match="integers"):
        photo_transforms("A", label_keys="L", preprocess="none")(
            {"A": np.zeros((8, 8), np.uint8), "L": np.full((8, 8), 0.5)}
        )


def test_slice_transforms_pad_flip_labels_any_channels():
    x = torch.linspace(-1, 1, 2 * 6 * 10).reshape(2, 6, 10)
    lab = torch.arange(60).reshape(6, 10) % 4
    t = slice_transforms("image", size=(8, 12), label_keys="label", flip_axis=1)
    seen = set()
    for seed in range(10):
        out = t.set_random_state(seed)({"image": x, "label": lab})
        img, y = out["image"], out["label"]
        assert img.shape == (2, 8, 12) and y.shape == (1, 8, 12) and y.dtype == torch.int64
        assert torch.all(img[:, 0] == -1.0) and torch.all(y[:, 0] == 0)  # padding: background -1 / label 0
        inner, inner_y = img[:, 1:7, 1:11], y[0, 1:7, 1:11]
        is_flipped = torch.equal(inner, x.flip(-1))
        assert is_flipped or torch.equal(inner, x)
        assert torch.equal(inner_y, lab.flip(-1) if is_flipped else lab)  # the label follows the image
        seen.add(is_flipped)
    assert seen == {True, False}
    with pytest.raises(Medi2iInputError, match="modality"):
        t({"image": "slice.nii.gz", "label": lab})
    with pytest.raises(ValueError, match="size"):
        slice_transforms("image", size=(0, 8))


# --------------------------------------------------------------------------------------------
# datasets


def _photo_unpaired(seed: int = 0) -> UnpairedDataset:
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
    b = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(5)]
    kw = dict(load_size=20, crop_size=16)
    return UnpairedDataset(a, b, photo_transforms("A", **kw), photo_transforms("B", **kw), seed=seed)


def test_unpaired_sampling_semantics():
    ds = _photo_unpaired()
    assert len(ds) == 5  # max(|A|, |B|)
    tagged = UnpairedDataset([{"A": torch.full((1, 2, 2), i / 10)} for i in range(3)],
                             [{"B": torch.full((1, 2, 2), j / 10)} for j in range(7)], None, None)  # fmt: skip
    a_values = [round(float(tagged[i]["A"][0, 0, 0]) * 10) for i in range(len(tagged))]
    assert a_values == [0, 1, 2, 0, 1, 2, 0]  # A in order, index mod |A|
    draws = []
    for epoch in range(40):
        tagged.set_epoch(epoch)
        draws += [tagged.b_index(i) for i in range(len(tagged))]
        assert [round(float(tagged[i]["B"][0, 0, 0]) * 10) for i in range(2)] == draws[-7:-5]
    counts = np.bincount(draws, minlength=7)
    assert counts.min() > 20  # uniform over B (280 draws, expectation 40 each)
    with pytest.raises(IndexError):
        tagged[7]
    with pytest.raises(Medi2iInputError):
        UnpairedDataset([], [1], None, None)


def test_items_are_pure_functions_of_seed_epoch_index():
    ds, again = _photo_unpaired(), _photo_unpaired()
    first = [ds[i] for i in range(len(ds))]
    reverse = [again[i] for i in reversed(range(len(again)))][::-1]  # other order, other instance
    for x, y in zip(first, reverse, strict=True):
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    ds.set_epoch(1)
    second = [ds[i] for i in range(len(ds))]
    assert any(not torch.equal(x["A"], y["A"]) for x, y in zip(first, second, strict=True))  # new augmentation
    ds.set_epoch(0)
    assert torch.equal(ds[2]["A"], first[2]["A"])
    assert not torch.equal(_photo_unpaired(seed=3)[0]["A"], first[0]["A"])
    for workers in (0, 2):  # the same batches with or without worker processes
        loader = torch.utils.data.DataLoader(_photo_unpaired(), batch_size=5, num_workers=workers)
        assert torch.equal(next(iter(loader))["B"], torch.stack([x["B"] for x in first]))
    assert item_seed(0, 0, 1) != item_seed(0, 0, 1, stream=1)


def test_paired_exemplar_and_single_image_datasets():
    image, label = _coded_image(32, 32)
    items = [{"image": image, "label": label}, {"image": 255 - image, "label": label[:, ::-1].copy()}]
    transform = photo_transforms("image", label_keys="label", load_size=32, crop_size=24)
    paired = PairedDataset(items, transform, seed=1)
    assert paired[0]["label"].dtype == torch.int64 and torch.equal(paired[1]["image"], paired[1]["image"])

    exemplars = ExemplarPairDataset(items, transform, pseudo_pair_prob=0.5, seed=0)
    kinds = set()
    for epoch in range(6):
        exemplars.set_epoch(epoch)
        for i in range(2):
            out = exemplars[i]
            assert set(out) == {"label", "image", "exemplar", "exemplar_label", "pseudo_pair"}
            assert out["exemplar"].shape == out["image"].shape and out["exemplar_label"].dtype == torch.int64
            kinds.add(bool(out["pseudo_pair"]))
    assert kinds == {True, False}
    only = ExemplarPairDataset(items[:1], None, pseudo_pair_prob=0.0)[0]
    assert bool(only["pseudo_pair"]) and np.array_equal(only["exemplar"], only["image"])  # non-tensors kept

    big = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    crop = photo_transforms(("A", "B"), crop_size=16, preprocess="crop", allow_missing_keys=True)
    single = SingleImageDataset(big, big[::-1].copy(), crop, crops_per_epoch=4, seed=0)
    assert len(single) == 4
    out = single[0]
    assert out["A"].shape == out["B"].shape == (3, 16, 16)
    assert not torch.equal(single[0]["A"], single[1]["A"])
    with pytest.raises(ValueError, match="allow_missing_keys"):
        SingleImageDataset(big, big, photo_transforms(("A", "B"), crop_size=16, preprocess="crop"), crops_per_epoch=1)[
            0
        ]


# --------------------------------------------------------------------------------------------
# synthetic tasks


def test_tiny_tasks_follow_the_digest():
    task = synthetic.tiny_unpaired_task(16, seed=0)
    assert task["A"].shape == (16, 1, 32, 32)
    assert torch.allclose(synthetic.class_means(task["A"], task["A_label"]), torch.tensor(synthetic.X_VALUES))
    assert torch.allclose(synthetic.class_means(task["B"], task["B_label"]), torch.tensor(synthetic.Y_VALUES))
    assert not torch.equal(task["A_label"], task["B_label"])  # different layouts: unpaired
    assert torch.equal(synthetic.tiny_unpaired_task(16, seed=0)["A"], task["A"])

    spade = synthetic.tiny_spade_task(16, seed=0)
    labels = spade["label"]
    assert set(labels.unique().tolist()) == {0, 1, 2}
    accuracy = synthetic.pixel_accuracy(synthetic.nearest_colour_segmentation(spade["image"]), labels)
    majority = float(torch.bincount(labels.flatten()).max()) / labels.numel()
    assert accuracy > 0.99 > majority  # the check's segmenter reads the ground truth back
    brightness = spade["image"].mean(dim=(1, 2, 3)) - synthetic.tiny_spade_task(16, seed=0, max_shift=0.0)[
        "image"
    ].mean(dim=(1, 2, 3))
    assert torch.corrcoef(torch.stack([brightness, spade["shift"]]))[0, 1] > 0.9

    palettes = synthetic.tiny_palette_task(8, seed=1)
    own = synthetic.palette_distances(palettes["image"], palettes["label"], palettes["palette"])
    other = synthetic.palette_distances(palettes["image"], palettes["label"], palettes["palette"].roll(1, 0))
    assert own.max() < 1e-5 and other.min() > 0.1

    content, style = synthetic.dtp_lite_pair(64)
    assert torch.equal(content[0], content[2])  # grey content
    assert style[2].mean() - style[0].mean() > 0.8  # strong blue cast
    assert style.std() > content.std() * 0.5 and float(style.abs().max()) <= 1.0


def test_rabit_lite_pairs():
    task = synthetic.rabit_lite_task(20, seed=0)
    assert task["image"].shape == (20, 3, 64, 64) and task["pseudo_pair"].shape == (20,)
    assert set(task["label"].unique().tolist()) == {0, 1, 2, 3}
    pseudo = task["pseudo_pair"]
    assert 0 < int(pseudo.sum()) < 20
    for i in torch.nonzero(pseudo).flatten().tolist():  # flipped or shifted ground truth
        ex, gt = task["exemplar_label"][i, 0], task["label"][i, 0]
        shifted = any(torch.equal(ex, gt.roll((dy, dx), (0, 1))) for dy in range(-8, 9) for dx in range(-8, 9))
        assert torch.equal(ex, gt.flip(-1)) or shifted
    real = ~pseudo
    assert not torch.equal(task["exemplar_colours"][real], task["colours"][real])


# --------------------------------------------------------------------------------------------
# offline default photos


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_default_photos_load_offline(no_network):
    from medi2i.natural.data import defaults

    for name in defaults.RGB_PHOTOS + defaults.TEXTURES:
        assert defaults.skimage_image_path(name).is_file()
    ds = defaults.default_unpaired_photos(load_size=72, crop_size=64)
    out = ds[0]
    assert out["A"].shape == out["B"].shape == (3, 64, 64) and out["A_path"].endswith("astronaut.png")
    semantic = defaults.default_semantic_photos(names=("chelsea", "coffee"), num_classes=3, load_size=72, crop_size=64)
    pair = semantic[1]
    assert pair["label"].dtype == torch.int64 and set(pair["label"].unique().tolist()) <= {0, 1, 2}
    styles = defaults.default_style_pairs(pairs=(("chelsea", "brick"),), size=32)
    assert styles[0]["content"].shape == styles[0]["style"].shape == (3, 32, 32)
    with pytest.raises(Medi2iInputError, match="did you mean"):
        defaults.skimage_image_path("astronout")


def test_module_exports_resolve():
    import medi2i.natural.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None
    assert datasets.as_items({"x": torch.zeros(2, 1)})[1]["x"].shape == (1,)
