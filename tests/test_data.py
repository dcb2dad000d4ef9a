"""Tests for l2ul.data: every dataset spec on tiny generated data (no network), plus one shared-data test."""
import hashlib
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from l2ul.data import (
    UTKFACE_GROUPINGS,
    ArrayImageDataset,
    DatasetBundle,
    describe_specs,
    load_dataset,
    parse_utkface_name,
    stack,
    utkface_age_class,
    utkface_split,
)
from l2ul.errors import DataError, L2ULError

# ----------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_shapes_ranges_and_split(digits):
    b = digits
    assert isinstance(b, DatasetBundle)
    assert (b.n_train, b.n_test) == (1437, 360)
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10 and b.class_names == [str(i) for i in range(10)]
    assert b.train_labels.dtype == np.int64 and b.test_labels.dtype == np.int64
    assert b.train_ids == list(range(1437))
    x, y = b.train[5]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and isinstance(y, int)
    assert y == b.train_labels[5]
    xs, ys = stack(b.train, range(b.n_train))
    assert 0.0 <= float(xs.min()) and float(xs.max()) == 1.0  # grey 16 -> 1.0
    assert torch.equal(ys, torch.from_numpy(b.train_labels))
    # stratified: every class has 35-37 test images (360 / 10 with the class proportions of 1797)
    counts = np.bincount(b.test_labels, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37
    # train and test are disjoint pieces of the 1797 images
    src_tr, src_te = b.extra["source_indices_train"], b.extra["source_indices_test"]
    assert len(set(src_tr) | set(src_te)) == 1797 and not set(src_tr) & set(src_te)
    assert "random_state=0" in b.description
    assert b.extra["train_eval"] is b.train  # no augmentation for tiny grey data
    assert load_dataset("digits", augment=True).train.transform is None


def test_digits_deterministic(digits):
    again = load_dataset("digits")
    assert np.array_equal(again.train_labels, digits.train_labels)
    assert np.array_equal(again.test_labels, digits.test_labels)
    assert torch.equal(again.train.images, digits.train.images)


def test_stack_subset_and_retain(digits):
    b = digits
    idx = [3, 17, 42]
    x, y = b.stack_train(idx)
    assert x.shape == (3, 1, 8, 8) and y.dtype == torch.int64
    for row, i in enumerate(idx):
        xi, yi = b.train[i]
        assert torch.equal(x[row], xi) and int(y[row]) == yi
    sub = b.train_subset(idx)
    assert len(sub) == 3
    xs, ys = stack(sub, [2, 0])  # fast path through a Subset
    assert torch.equal(xs[0], x[2]) and torch.equal(ys, y[[2, 0]])
    keep = b.retain_indices(idx)
    assert len(keep) == b.n_train - 3 and not set(idx) & set(keep.tolist())
    with pytest.raises(DataError, match="outside"):
        b.train_subset([b.n_train])
    assert "n_train=1437" in repr(b)  # repr stays short (no train_ids dump)


# ----------------------------------------------------------------------------------------------------------
# ArrayImageDataset
# ----------------------------------------------------------------------------------------------------------


def test_array_dataset_layouts_agree():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1])
    a = ArrayImageDataset(nhwc, y)
    b = ArrayImageDataset(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)), y)
    assert a.images.shape == b.images.shape == (4, 3, 5, 6)
    assert torch.equal(a.images, b.images)
    x0, y0 = a[1]
    assert torch.allclose(x0, torch.from_numpy(nhwc[1].transpose(2, 0, 1)).float() / 255) and y0 == 1
    grey = ArrayImageDataset(nhwc[..., 0], y)
    assert grey.images.shape == (4, 1, 5, 6)
    flip = ArrayImageDataset(nhwc, y, transform=lambda t: t.flip(-1))
    assert torch.equal(flip[2][0], a[2][0].flip(-1))
    with pytest.raises(DataError, match="uint8"):
        ArrayImageDataset(nhwc.astype(np.float32), y)
    with pytest.raises(DataError, match="one label per image"):
        ArrayImageDataset(nhwc, y[:3])


# ----------------------------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------------------------


def _tiny_arrays(n_train=20, n_test=8, shape=(32, 32, 3), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n_train,) + shape, dtype=np.uint8),
            rng.integers(0, classes, size=n_train).astype(np.uint8),
            rng.integers(0, 256, size=(n_test,) + shape, dtype=np.uint8),
            rng.integers(0, classes, size=n_test).astype(np.uint8))


def test_npz_round_trip_rgb(tmp_path):
    x_tr, y_tr, x_te, y_te = _tiny_arrays()
    names = np.array(["a", "b", "c", "d"])
    p = tmp_path / "tiny.npz"
    np.savez(p, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, class_names=names)
    b = load_dataset(f"npz:{p}")
    assert (b.n_train, b.n_test, b.num_classes) == (20, 8, 4)
    assert b.class_names == ["a", "b", "c", "d"] and b.input_shape == (3, 32, 32)
    assert np.array_equal(b.train_labels, y_tr.astype(np.int64)) and b.train_labels.dtype == np.int64
    x, y = b.test[3]
    assert torch.allclose(x, torch.from_numpy(x_te[3]).permute(2, 0, 1).float() / 255) and y == y_te[3]
    # augment: random crop (padding 4) + flip on 32x32 RGB; the un-augmented set stays available
    aug = load_dataset(f"npz:{p}", augment=True)
    assert aug.train.transform is not None and aug.extra["train_eval"].transform is None
    torch.manual_seed(0)
    assert aug.train[0][0].shape == (3, 32, 32)
    assert torch.equal(aug.stack_train([0])[0][0], b.train[0][0])  # stack_train is un-augmented


def test_npz_grey_without_class_names(tmp_path):
    x_tr, y_tr, x_te, y_te = _tiny_arrays(shape=(28, 28), classes=3)
    y_tr[0] = 2  # make sure the top class appears
    p = tmp_path / "grey.npz"
    np.savez(p, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    b = load_dataset(f"npz:{p}", augment=True)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 3 and b.class_names == ["0", "1", "2"]
    assert b.train.transform is None  # grey data is never augmented


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("y_test"), "lacks y_test"),
    (lambda d: d.update(x_train=d["x_train"].astype(np.float32)), "x_train has dtype float32"),
    (lambda d: d.update(y_train=d["y_train"][:5]), "y_train has shape"),
    (lambda d: d.update(x_test=d["x_test"][:, :, :, :, None]), "x_test has shape"),
    (lambda d: d.update(class_names=np.array(["a", "b"])), "no entry in class_names"),
    (lambda d: d.update(y_train=d["y_train"].astype(np.float64)), "integer labels"),
])
def test_npz_malformed(tmp_path, mutate, match):
    x_tr, y_tr, x_te, y_te = _tiny_arrays()
    d = dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    mutate(d)
    p = tmp_path / "bad.npz"
    np.savez(p, **d)
    with pytest.raises(DataError, match=match):
        load_dataset(f"npz:{p}")


def test_npz_missing_file_and_not_npz(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_dataset(f"npz:{junk}")


def test_unknown_spec_lists_valid_specs():
    with pytest.raises(DataError) as e:
        load_dataset("mnist-but-typo")
    msg = str(e.value)
    for s in ("digits", "npz:PATH", "cifar10-jpeg:PATH", "imagefolder:PATH", "utkface:PATH"):
        assert s in msg
    assert "cifar100" in describe_specs()
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("npz")
    with pytest.raises(DataError, match="takes no options"):
        load_dataset("digits?x=1")
    assert issubclass(DataError, L2ULError)


# ----------------------------------------------------------------------------------------------------------
# cifar10-jpeg (JPEG bytes npz)
# ----------------------------------------------------------------------------------------------------------


def _jpeg_npz(path, n_train=12, n_test=5, size=32, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        blobs, imgs = [], []
        for _ in range(n):
            arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            imgs.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        return np.concatenate(blobs), offsets, np.stack(imgs)

    trb, tro, x_tr = split(n_train)
    teb, teo, x_te = split(n_test)
    y_tr = (np.arange(n_train) % 3).astype(np.uint8)
    y_te = (np.arange(n_test) % 3).astype(np.uint8)
    np.savez(path, train_jpeg_bytes=trb, train_jpeg_offsets=tro, y_train=y_tr, test_jpeg_bytes=teb,
             test_jpeg_offsets=teo, y_test=y_te, class_names=np.array(["cat", "dog", "emu"]),
             train_names=np.array([f"x/{i:04d}.jpg" for i in range(n_train)]))
    return x_tr, x_te


def test_cifar10_jpeg_decode_and_cache(tmp_path):
    src = tmp_path / "tiny_jpeg.npz"
    x_tr, x_te = _jpeg_npz(src)
    cache_dir = tmp_path / "cache"
    b = load_dataset(f"cifar10-jpeg:{src}", data_dir=cache_dir)
    assert (b.n_train, b.n_test, b.num_classes) == (12, 5, 3) and b.class_names == ["cat", "dog", "emu"]
    assert b.input_shape == (3, 32, 32) and b.train_ids == list(range(12))
    assert torch.equal(b.train.images, torch.from_numpy(x_tr).permute(0, 3, 1, 2))  # file order, PIL pixels
    assert torch.equal(b.test.images, torch.from_numpy(x_te).permute(0, 3, 1, 2))
    assert b.extra["from_cache"] is False and b.extra["train_names"][1] == "x/0001.jpg"
    cache = b.extra["cache_path"]
    assert cache.is_file() and cache.parent.parent == cache_dir
    assert not list(cache.parent.glob("*.partial*"))
    # second load reuses the cache and gives identical arrays
    again = load_dataset(f"cifar10-jpeg:{src}", data_dir=cache_dir)
    assert again.extra["from_cache"] is True and "from cache" in again.description
    assert torch.equal(again.train.images, b.train.images)
    # a changed source (new mtime) gets a new cache; the stale one is removed
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_dataset(f"cifar10-jpeg:{src}", data_dir=cache_dir)
    assert third.extra["from_cache"] is False and third.extra["cache_path"] != cache
    assert not cache.exists() and third.extra["cache_path"].is_file()
    # a corrupt cache is ignored and rebuilt
    third.extra["cache_path"].write_bytes(b"garbage")
    fourth = load_dataset(f"cifar10-jpeg:{src}", data_dir=cache_dir)
    assert fourth.extra["from_cache"] is False and torch.equal(fourth.train.images, b.train.images)


def test_cifar10_jpeg_unwritable_cache_still_loads(tmp_path):
    src = tmp_path / "tiny_jpeg.npz"
    _jpeg_npz(src, n_train=3, n_test=2)
    blocker = tmp_path / "file_not_dir"
    blocker.write_text("x")  # a file where the cache directory should be -> cannot write the cache
    b = load_dataset(f"cifar10-jpeg:{src}", data_dir=blocker)
    assert b.n_train == 3 and b.extra["from_cache"] is False


def test_cifar10_jpeg_malformed(tmp_path):
    src = tmp_path / "tiny_jpeg.npz"
    _jpeg_npz(src, n_train=3, n_test=2)
    d = dict(np.load(src))
    d["train_jpeg_offsets"] = d["train_jpeg_offsets"] + 1
    bad = tmp_path / "bad_offsets.npz"
    np.savez(bad, **d)
    with pytest.raises(DataError, match="offsets"):
        load_dataset(f"cifar10-jpeg:{bad}", data_dir=tmp_path / "c")
    d = dict(np.load(src))
    del d["test_jpeg_bytes"]
    missing = tmp_path / "missing.npz"
    np.savez(missing, **d)
    with pytest.raises(DataError, match="lacks test_jpeg_bytes"):
        load_dataset(f"cifar10-jpeg:{missing}", data_dir=tmp_path / "c")
    d = dict(np.load(src))
    d["train_jpeg_bytes"] = np.zeros_like(d["train_jpeg_bytes"])
    garbage = tmp_path / "garbage.npz"
    np.savez(garbage, **d)
    with pytest.raises(DataError, match="not a decodable JPEG"):
        load_dataset(f"cifar10-jpeg:{garbage}", data_dir=tmp_path / "c")


# ----------------------------------------------------------------------------------------------------------
# torchvision datasets (never downloads here)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
def test_torchvision_missing_is_data_error(tmp_path, name):
    with pytest.raises(DataError) as e:
        load_dataset(name, data_dir=tmp_path)
    msg = str(e.value)
    assert "not found under" in msg and str(tmp_path) in msg and "--download" in msg and "--data-dir" in msg


# ----------------------------------------------------------------------------------------------------------
# imagefolder / imagenet
# ----------------------------------------------------------------------------------------------------------


def _write_png(path, size=(40, 30), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


@pytest.fixture
def folder_tree(tmp_path):
    root = tmp_path / "tree"
    seed = 0
    for cls, n in (("ant", 3), ("bee", 2), ("cow", 2)):
        for i in range(n):
            _write_png(root / "train" / cls / f"{i:02d}.png", seed=seed)
            seed += 1
    # the test folder lacks "bee": cow must still be class 2
    _write_png(root / "test" / "ant" / "t0.png", seed=100)
    _write_png(root / "test" / "cow" / "t1.png", seed=101)
    return root


def test_imagefolder_ids_labels_and_options(folder_tree):
    b = load_dataset(f"imagefolder:{folder_tree}")
    assert b.class_names == ["ant", "bee", "cow"] and b.num_classes == 3
    assert b.train_ids[0] == "train/ant/00.png" and b.train_ids[-1] == "train/cow/01.png"
    assert b.train_labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert b.test_labels.tolist() == [0, 2]
    assert b.input_shape == (3, 30, 40)  # ToTensor only: C, H, W of the files
    x, y = b.train[3]
    assert x.shape == (3, 30, 40) and 0 <= float(x.min()) and float(x.max()) <= 1 and y == 1
    expected = np.asarray(Image.open(folder_tree / "train/bee/00.png")).transpose(2, 0, 1) / 255
    assert np.allclose(x.numpy(), expected, atol=1e-6)
    xs, ys = b.stack_train([0, 5])
    assert xs.shape == (2, 3, 30, 40) and ys.tolist() == [0, 2]

    r = load_dataset(f"imagefolder:{folder_tree}?resize=20&crop=16")
    assert r.input_shape == (3, 16, 16) and r.test[1][0].shape == (3, 16, 16)
    assert r.train_ids == b.train_ids
    aug = load_dataset(f"imagefolder:{folder_tree}?resize=20&crop=16", augment=True)
    assert aug.train[0][0].shape == (3, 16, 16) and aug.extra["train_eval"] is not aug.train
    with pytest.raises(DataError, match="unknown option"):
        load_dataset(f"imagefolder:{folder_tree}?size=3")
    with pytest.raises(DataError, match="positive integer"):
        load_dataset(f"imagefolder:{folder_tree}?crop=abc")


def test_imagefolder_errors(folder_tree, tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'none'}")
    _write_png(folder_tree / "test" / "zebra" / "z.png")
    with pytest.raises(DataError, match="zebra"):
        load_dataset(f"imagefolder:{folder_tree}")
    lonely = tmp_path / "lonely"
    _write_png(lonely / "train" / "a" / "x.png")
    with pytest.raises(DataError, match="missing"):
        load_dataset(f"imagefolder:{lonely}")


def test_imagenet_uses_val_and_256_224(tmp_path):
    root = tmp_path / "inet"
    _write_png(root / "train" / "n01" / "a.png", size=(300, 260))
    _write_png(root / "train" / "n02" / "b.png", size=(260, 300), seed=1)
    _write_png(root / "val" / "n02" / "c.png", size=(256, 256), seed=2)
    b = load_dataset(f"imagenet:{root}")
    assert b.input_shape == (3, 224, 224) and b.n_test == 1 and b.test_labels.tolist() == [1]
    assert b.stack_train([0, 1])[0].shape == (2, 3, 224, 224)


# ----------------------------------------------------------------------------------------------------------
# UTKFace
# ----------------------------------------------------------------------------------------------------------

EDGE_AGES = [0, 10, 19, 20, 119, 120]
# hand-computed classes of EDGE_AGES (bins [e_i, e_{i+1}); 120 goes into the last bin)
EXPECTED_BINS = {
    "TNN": [0, 1, 2, 3, 8, 8],
    "MFD": [0, 0, 0, 1, 2, 2],
    "balanced": [0, 0, 0, 1, 3, 3],
    "groups": [0, 1, 2, 3, 6, 6],
    "tens": [0, 0, 1, 1, 11, 11],
}
EXPECTED_NUM_CLASSES = {"TNN": 9, "MFD": 3, "balanced": 4, "groups": 7, "tens": 12}
REAL_NAMES = ["1_0_0_20161219140623097.jpg.chip.jpg", "35_1_2_20170116174525125.jpg.chip.jpg",
              "100_1_0_20170110183726390.jpg.chip.jpg"]
MALFORMED = "39_1_20170116174525125.jpg.chip.jpg"  # missing the race field, as in the real release


def _write_jpeg(path, seed):
    arr = np.random.default_rng(seed).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")


@pytest.fixture(scope="module")
def utk_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("utkface")
    names = list(REAL_NAMES)
    names += [f"{age}_{i % 2}_{i % 5}_2017011{i % 10}1{i:08d}.jpg.chip.jpg" for i, age in enumerate(EDGE_AGES)]
    rng = np.random.default_rng(1)
    while len(names) < 50:
        i = len(names)
        names.append(f"{int(rng.integers(1, 100))}_{i % 2}_{i % 5}_2017{i:013d}.jpg.chip.jpg")
    for i, n in enumerate(names):
        _write_jpeg(root / n, seed=i)
    _write_jpeg(root / MALFORMED, seed=999)
    return root, sorted(names)


def _all_ids_labels(b):
    ids = b.train_ids + b.extra["val_ids"] + b.extra["test_ids"]
    labels = np.concatenate([b.train_labels, b.extra["val_labels"], b.test_labels])
    return dict(zip(ids, labels.tolist()))


def test_utkface_age_class_edges():
    for grouping, expected in EXPECTED_BINS.items():
        assert [utkface_age_class(a, grouping) for a in EDGE_AGES] == expected, grouping
        assert utkface_age_class(np.array(EDGE_AGES), grouping).tolist() == expected
        assert len(UTKFACE_GROUPINGS[grouping]) - 1 == EXPECTED_NUM_CLASSES[grouping]
    with pytest.raises(DataError):
        utkface_age_class(121)


def test_parse_utkface_name():
    assert parse_utkface_name("26_0_1_20170116174525125.jpg.chip.jpg") == (26, 0, 1)
    assert parse_utkface_name("sub/100_1_0_20170110183726390.jpg.chip.jpg") == (100, 1, 0)
    assert parse_utkface_name("5_1_3_2017.jpg") == (5, 1, 3)
    for bad in (MALFORMED, "61_1_20170109142408075.jpg.chip.jpg", "abc_0_1_2017.jpg", "130_0_1_2017.jpg",
                "26_0_1.jpg"):
        assert parse_utkface_name(bad) is None, bad


@pytest.mark.parametrize("grouping", list(EXPECTED_BINS))
def test_utkface_bins_per_grouping(utk_dir, grouping):
    root, _ = utk_dir
    b = load_dataset(f"utkface:{root}?grouping={grouping}")
    assert b.num_classes == EXPECTED_NUM_CLASSES[grouping] and len(b.class_names) == b.num_classes
    labels = _all_ids_labels(b)
    for i, age in enumerate(EDGE_AGES):
        name = next(n for n in labels if n.startswith(f"{age}_{i % 2}_{i % 5}_2017011{i % 10}1"))
        assert labels[name] == EXPECTED_BINS[grouping][i], (grouping, age)
    assert labels[REAL_NAMES[1]] == utkface_age_class(35, grouping)


def test_utkface_bundle_split_and_images(utk_dir):
    root, names = utk_dir
    b = load_dataset(f"utkface:{root}")  # default grouping: balanced
    assert b.extra["grouping"] == "balanced" and b.class_names == ["0-19", "20-29", "30-44", "45-120"]
    assert "skipped 1 files" in b.description and b.extra["skipped"] == [MALFORMED]
    assert (b.n_train, len(b.extra["val"]), b.n_test) == (40, 5, 5)  # 50 files scaled from 18966/2371/rest
    # the paper's split: sorted names, np.random.seed(0); np.random.permutation
    state = np.random.get_state()
    np.random.seed(0)
    perm = np.random.permutation(len(names))
    np.random.set_state(state)
    assert b.train_ids == [names[i] for i in perm[:40]]
    assert b.extra["val_ids"] == [names[i] for i in perm[40:45]]
    assert b.extra["test_ids"] == [names[i] for i in perm[45:]]
    assert load_dataset(f"utkface:{root}").train_ids == b.train_ids  # deterministic
    assert b.input_shape == (3, 120, 120)
    x, y = b.train[0]
    assert x.shape == (3, 120, 120) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert y == b.train_labels[0]
    assert b.extra["val"][0][0].shape == (3, 120, 120)
    aug = load_dataset(f"utkface:{root}", augment=True)
    assert aug.train[0][0].shape == (3, 120, 120) and aug.train_ids == b.train_ids


def test_utkface_split_full_size_matches_paper():
    tr, va, te = utkface_split(23708)
    assert (len(tr), len(va), len(te)) == (18966, 2371, 2371)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(23708))
    tr2, va2, te2 = utkface_split(2)
    assert len(tr2) == 1 and len(te2) == 1


def test_utkface_errors(tmp_path, utk_dir):
    empty = tmp_path / "utk_empty"
    empty.mkdir()
    _write_jpeg(empty / "not_a_face.jpg", seed=0)
    with pytest.raises(DataError, match="no UTKFace images"):
        load_dataset(f"utkface:{empty}")
    with pytest.raises(DataError, match="valid: TNN"):
        load_dataset(f"utkface:{utk_dir[0]}?grouping=decades")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"utkface:{tmp_path / 'missing'}")


# ----------------------------------------------------------------------------------------------------------
# real data (skipped without ../shared)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_shared_cifar10_jpeg(shared_dir, tmp_path):
    src = shared_dir / "datasets" / "cifar10_jpeg.npz"
    if not src.is_file():
        pytest.skip(f"{src} absent")
    b = load_dataset(f"cifar10-jpeg:{src}", data_dir=tmp_path)
    try:
        assert (b.n_train, b.n_test, b.num_classes) == (50000, 10000, 10)
        assert b.input_shape == (3, 32, 32) and b.class_names[0] == "airplane" and b.class_names[9] == "truck"
        assert np.bincount(b.train_labels).tolist() == [5000] * 10
        assert np.bincount(b.test_labels).tolist() == [1000] * 10
        # pixels match the reference decoder's checksum in shared/datasets/README.md
        nhwc = b.train.images.permute(0, 2, 3, 1).contiguous().numpy()
        assert hashlib.sha256(nhwc.tobytes()).hexdigest().startswith("bf3aabd52be912da")
    finally:
        cache = b.extra["cache_path"]
        if cache.exists():
            cache.unlink()
