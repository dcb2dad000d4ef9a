"""The outputs cache (:mod:`l2ul.output_cache`): a hit returns exactly what the computation would, any change
of the model, the data or the settings misses, a damaged file is recomputed, ``L2UL_CACHE=0`` turns it off,
and a whole deletion request gives bit-identical model and figures with the cache on and off."""
import hashlib
import json

import pytest
import torch

from _digits import digits_setup
from l2ul.cli import main
from l2ul.evaluation import predict
from l2ul.output_cache import cached_predict


@pytest.fixture(scope="module")
def digits():
    model, xtr, ytr, xte, yte = digits_setup()
    return model, (xte, yte)


def test_a_hit_is_bit_identical_to_the_computation(digits, tmp_path):
    model, data = digits
    first = cached_predict(model, data, batch_size=64, cache_dir=tmp_path)
    again = cached_predict(model, data, batch_size=64, cache_dir=tmp_path)
    fresh = predict(model, data, batch_size=64)
    assert not first.from_cache and again.from_cache
    assert torch.equal(again.logits, fresh.logits) and torch.equal(again.labels, fresh.labels)
    assert len(list(tmp_path.iterdir())) == 1


def test_any_change_of_model_data_or_settings_misses(digits, tmp_path):
    model, (x, y) = digits
    cached_predict(model, (x, y), batch_size=64, cache_dir=tmp_path)
    other = type(model)()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-6              # one weight, by a hair
    x2 = x.clone()
    x2[5, 0, 3, 3] += 1 / 16                                        # one pixel of one image
    y2 = y.clone()
    y2[0] = (y2[0] + 1) % 10                                        # one label
    for m, d, bs in ((other, (x, y), 64), (model, (x2, y), 64), (model, (x, y2), 64), (model, (x, y), 32)):
        out = cached_predict(m, d, batch_size=bs, cache_dir=tmp_path)
        assert not out.from_cache
        assert torch.equal(out.logits, predict(m, d, batch_size=bs).logits)
    assert len(list(tmp_path.iterdir())) == 5


def test_a_damaged_file_is_recomputed_and_the_cache_can_be_turned_off(digits, tmp_path, monkeypatch):
    model, data = digits
    cached_predict(model, data, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:100])
    out = cached_predict(model, data, cache_dir=tmp_path)
    assert not out.from_cache and torch.equal(out.logits, predict(model, data).logits)
    assert cached_predict(model, data, cache_dir=tmp_path).from_cache   # rewritten
    off = tmp_path / "off"
    monkeypatch.setenv("L2UL_CACHE", "0")
    assert not cached_predict(model, data, cache_dir=off).from_cache
    assert not off.exists()


FAST = ["--retain-eval-size", "300", "--quiet", "--repair-steps", "30"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_request_is_bit_identical_with_the_cache_on_and_off(tmp_path, monkeypatch):
    """The default method (repair, with a proxy: its teacher logits and the original's figures are the
    cached outputs) gives the same model file and the same figures cold, warm, and with the cache off."""
    import numpy as np

    base = tmp_path / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--recipe", "quick", "--epochs", "3",
                 "--out", str(base), "--quiet"]) == 0
    _, _, _, xte, _ = digits_setup()
    proxy = tmp_path / "proxy.npz"
    np.savez(proxy, x=xte[:200].numpy())
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path / "cache"))
    outs, cache = {}, tmp_path / "cache" / "outputs"
    for run, env in (("cold", "1"), ("warm", "1"), ("off", "0")):
        if run == "warm":
            written = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
        monkeypatch.setenv("L2UL_CACHE", env)
        out = tmp_path / f"{run}.safetensors"
        assert main(["unlearn", "--model", str(base), "--forget-ids", "3,17,42", "--proxy-data", f"npz:{proxy}",
                     "--out", str(out), *FAST]) == 0
        outs[run] = out
        if run == "warm":                                   # every output was read, none recomputed
            assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == written
    assert len(written) == 4                                # the teacher's + the original's on 3 splits
    # another request on the same model: only its forget set is new; D_r is the same fixed sample less its
    # instances, so the original's figures on it (and on D_test, and the teacher outputs) are read
    monkeypatch.setenv("L2UL_CACHE", "1")
    assert main(["unlearn", "--model", str(base), "--forget-ids", "5,6", "--proxy-data", f"npz:{proxy}",
                 "--out", str(tmp_path / "other.safetensors"), *FAST]) == 0
    now = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(now) == 5 and all(now[p] == t for p, t in written.items())
    assert _sha(outs["cold"]) == _sha(outs["warm"]) == _sha(outs["off"])
    reports = [json.loads(open(str(o) + ".report.json").read()) for o in outs.values()]
    assert reports[0]["metrics"] == reports[1]["metrics"] == reports[2]["metrics"]
    other = json.loads(open(str(tmp_path / "other.safetensors") + ".report.json").read())
    from l2ul import load_dataset
    from l2ul.pipeline import retain_eval_sample

    sample = set(retain_eval_sample(load_dataset("digits"), 300).tolist())
    for rep, ids in ((reports[0], {3, 17, 42}), (other, {5, 6})):
        assert rep["dataset"]["retain_eval_size"] == 300 - len(sample & ids)
    stages = reports[0]["request_timings_s"]                # the request's wall time, evaluation included
    assert set(stages) == {"load", "unlearn", "evaluation", "report", "total_before_publish"}
    assert stages["total_before_publish"] == pytest.approx(sum(v for k, v in stages.items() if k != "total_before_publish"))
