"""l2ul.proxy: unlabeled proxy images for the repair phase (issue #11)."""
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import l2ul
from l2ul.errors import DataError
from l2ul.proxy import check_not_training_data, describe_proxy, image_hashes, list_image_files, load_proxy


def _rgb(n, h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _one_line(e):
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- npz


def test_npz_uint8_nhwc(tmp_path):
    x = _rgb(5)
    np.savez(tmp_path / "p.npz", x=x, y=np.arange(5))
    out = load_proxy(f"npz:{tmp_path / 'p.npz'}")
    assert out.dtype == torch.float32 and out.shape == (5, 3, 8, 8)
    assert torch.equal(out, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert describe_proxy(f"npz:{tmp_path / 'p.npz'}", out) == f"npz:{tmp_path / 'p.npz'} (5 images, 3x8x8)"


def test_npz_uint8_nhw_and_float_nchw(tmp_path):
    g = np.random.default_rng(1).integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", x=g)
    out = load_proxy(f"npz:{tmp_path / 'g.npz'}")
    assert out.shape == (4, 1, 6, 6) and float(out.max()) <= 1
    f = np.random.default_rng(2).random((3, 3, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=f)
    assert torch.allclose(load_proxy(f"npz:{tmp_path / 'f.npz'}"), torch.from_numpy(f))


def test_npz_channel_conversion_and_subset(tmp_path):
    x = _rgb(10)
    np.savez(tmp_path / "p.npz", x=x)
    grey = load_proxy(f"npz:{tmp_path / 'p.npz'}", image_shape=(1, 8, 8))
    assert grey.shape == (10, 1, 8, 8)
    expect = (x.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert torch.allclose(grey[:, 0], torch.from_numpy(expect), atol=1e-5)
    sub = load_proxy(f"npz:{tmp_path / 'p.npz'}", max_images=4, seed=3)
    assert sub.shape[0] == 4
    assert torch.equal(sub, load_proxy(f"npz:{tmp_path / 'p.npz'}", max_images=4, seed=3))
    full = load_proxy(f"npz:{tmp_path / 'p.npz'}")
    assert all(any(torch.equal(s, f) for f in full) for s in sub)
    np.savez(tmp_path / "g.npz", x=x[..., 0])
    assert load_proxy(f"npz:{tmp_path / 'g.npz'}", image_shape=(3, 8, 8)).shape == (10, 3, 8, 8)


@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b"this is not a zip file at all"), "damaged"),
    (lambda p: np.savez(p, images=_rgb(2)), "no key 'x'"),
    (lambda p: np.savez(p, x=np.array([object(), object()], dtype=object)), "object"),
    (lambda p: np.savez(p, x=_rgb(2).astype(np.int64)), "dtype int64"),
    (lambda p: np.savez(p, x=np.full((2, 3, 4, 4), 2.0, np.float32)), "[0, 1]"),
    (lambda p: np.savez(p, x=np.full((2, 3, 4, 4), np.nan, np.float32)), "NaN"),
    (lambda p: np.savez(p, x=np.zeros((2, 4, 4, 5), np.uint8)), "shape"),
    (lambda p: np.savez(p, x=np.zeros((0, 4, 4, 3), np.uint8)), "no images"),
    (lambda p: np.savez(p, x=np.array(["a", "b"])), "dtype"),
    (lambda p: np.save(open(p, "wb"), _rgb(2)), "single .npy"),
])
def test_npz_errors(tmp_path, make, needle):
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{p}")
    assert needle in _one_line(e)


def test_npz_truncated(tmp_path):
    p = tmp_path / "t.npz"
    np.savez_compressed(p, x=_rgb(50, 16, 16))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{p}")
    assert "damaged" in _one_line(e)


def test_npz_corrupt_member(tmp_path):
    p = tmp_path / "c.npz"
    np.savez_compressed(p, x=_rgb(50, 16, 16))
    with zipfile.ZipFile(p) as z:
        info = z.infolist()[0]
    raw = bytearray(p.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 10
    raw[start:start + 200] = bytes(200)
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{p}")
    assert "damaged" in _one_line(e)


def test_npz_wrong_size_vs_image_shape(tmp_path):
    np.savez(tmp_path / "p.npz", x=_rgb(2, 8, 8))
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{tmp_path / 'p.npz'}", image_shape=(3, 32, 32))
    assert "8x8" in _one_line(e) and "32x32" in str(e.value)
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{tmp_path / 'p.npz'}", image_shape=(2, 8, 8))
    assert "channels" in _one_line(e)


@pytest.mark.parametrize("spec, needle", [
    ("cifar10:/x", "unknown proxy spec"), ("npz:", "needs a path"), ("nopath", "unknown proxy spec"),
    (42, "must be a string"),
])
def test_bad_specs(spec, needle):
    with pytest.raises(DataError) as e:
        load_proxy(spec)
    assert needle in _one_line(e)


def test_npz_path_is_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_proxy(f"npz:{tmp_path}")
    assert "not a regular file" in _one_line(e)


# ---------------------------------------------------------------------------------------------- folder


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_imagefolder_nested_sorted_and_skips(tmp_path):
    x = _rgb(4)
    _save(tmp_path / "b" / "deep" / "er" / "1.png", x[1])
    _save(tmp_path / "a" / "0.png", x[0])
    _save(tmp_path / "2.png", x[2])
    _save(tmp_path / "c" / "3.bmp", x[3])
    _save(tmp_path / ".hidden" / "h.png", x[0])
    (tmp_path / "notes.txt").write_text("not an image")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")          # opening it would block forever
    out = load_proxy(f"imagefolder:{tmp_path}")
    assert out.shape == (4, 3, 8, 8)
    order = [x[2], x[0], x[1], x[3]]            # 2.png, a/0.png, b/deep/er/1.png, c/3.bmp
    for got, want in zip(out, order):
        assert torch.equal(got, torch.from_numpy(want).permute(2, 0, 1).float() / 255)
    files, skipped = list_image_files(tmp_path)
    assert len(files) == 4 and skipped == (1 if hasattr(os, "mkfifo") else 0)


def test_imagefolder_grey_rgb_mix_and_conversion(tmp_path):
    _save(tmp_path / "g.png", np.full((8, 8), 100, np.uint8))
    _save(tmp_path / "r.png", _rgb(1)[0])
    out = load_proxy(f"imagefolder:{tmp_path}")
    assert out.shape == (2, 3, 8, 8)
    assert torch.allclose(out[0], torch.full((3, 8, 8), 100 / 255))
    grey = load_proxy(f"imagefolder:{tmp_path}", image_shape=(1, 8, 8))
    assert grey.shape == (2, 1, 8, 8)
    only_grey = tmp_path / "only"
    _save(only_grey / "g.png", np.full((8, 8), 7, np.uint8))
    assert load_proxy(f"imagefolder:{only_grey}").shape == (1, 1, 8, 8)


def test_imagefolder_mixed_sizes(tmp_path):
    _save(tmp_path / "a.png", _rgb(1, 8, 8)[0])
    _save(tmp_path / "b.png", _rgb(1, 10, 12)[0])
    with pytest.raises(DataError) as e:
        load_proxy(f"imagefolder:{tmp_path}")
    assert "different sizes" in _one_line(e) and "image_shape" in str(e.value)
    out = load_proxy(f"imagefolder:{tmp_path}", image_shape=(3, 8, 8), max_images=2)
    assert out.shape == (2, 3, 8, 8) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError) as e:
        load_proxy(f"imagefolder:{tmp_path / 'missing'}")
    assert "not found" in _one_line(e)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        load_proxy(f"imagefolder:{tmp_path / 'empty'}")
    assert "no image files" in _one_line(e)
    bad = tmp_path / "bad"
    _save(bad / "ok.png", _rgb(1)[0])
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError) as e:
        load_proxy(f"imagefolder:{bad}")
    assert "broken.jpg" in _one_line(e)
    f = tmp_path / "file.png"
    _save(f, _rgb(1)[0])
    with pytest.raises(DataError) as e:
        load_proxy(f"imagefolder:{f}")
    assert "not a folder" in _one_line(e)


# ---------------------------------------------------------------------------------------------- overlap


@pytest.fixture(scope="module")
def digits():
    return l2ul.load_dataset("digits")


def test_overlap_refused_and_allowed(digits):
    train_x, _ = digits.stack_train(range(digits.n_train))
    test_x = torch.stack([digits.test[i][0] for i in range(100)])
    assert check_not_training_data(test_x, digits) == 0
    mixed = torch.cat([test_x, train_x[[5, 700]]])
    with pytest.raises(DataError) as e:
        check_not_training_data(mixed, digits)
    msg = _one_line(e)
    assert "oracle" in msg and "allow=True" in msg and "2 of its 102" in msg
    assert check_not_training_data(mixed, digits, allow=True) == 2
    # a plain tensor sample of the training images works too, and a Subset
    assert check_not_training_data(mixed, train_x[600:800], allow=True) == 1
    from torch.utils.data import Subset
    assert check_not_training_data(mixed, Subset(digits.train, [5, 6, 7]), allow=True) == 1


def test_overlap_with_forget_set_refused_even_if_allowed(digits):
    x_f, _ = digits.stack_train([3, 9])
    test_x = torch.stack([digits.test[i][0] for i in range(20)])
    with pytest.raises(DataError) as e:
        check_not_training_data(torch.cat([test_x, x_f[1:]]), digits, allow=True, forget=x_f)
    assert "teach them back" in _one_line(e)


def test_overlap_survives_npz_roundtrip(tmp_path):
    # a proxy written to disk as uint8 and read back is still recognised as training data
    x = _rgb(30, 8, 8, seed=5)
    train = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()       # uint8 NCHW
    np.savez(tmp_path / "p.npz", x=x[10:20])
    proxy = load_proxy(f"npz:{tmp_path / 'p.npz'}")
    assert check_not_training_data(proxy, train, allow=True) == 10
    assert image_hashes(proxy) == image_hashes(train[10:20])
