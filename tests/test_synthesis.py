"""l2ul.synthesis: data-free proxy images (DeepInversion) and the cheap alternatives (issue #11)."""
import functools

import pytest
import torch
import torch.nn.functional as F

import l2ul
from l2ul.errors import ConfigError, DataError
from l2ul.synthesis import (
    adversarial_proxy,
    augment_images,
    bn_statistics_loss,
    cached_synthesis,
    invert_bn_statistics,
    mix_sources,
    mixup_images,
    state_dict_hash,
    synthesis_cache_path,
)

SHAPE = (1, 8, 8)


@functools.lru_cache(maxsize=1)
def _trained():
    """small_cnn (width 8, BatchNorm) trained briefly on the digits: real running statistics to invert."""
    data = l2ul.load_dataset("digits")
    x, y = data.stack_train(range(data.n_train))
    torch.manual_seed(0)
    model = l2ul.create_model("small_cnn", num_classes=10, in_channels=1, width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    model.eval()
    return model, x, y


@pytest.fixture()
def model():
    import copy

    return copy.deepcopy(_trained()[0])


KW = dict(image_shape=SHAPE, num_classes=10, steps=25, batch_size=20, lr=0.1)


def test_bn_loss_decreases_and_outputs_valid(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    noise = (0.5 + 0.2 * torch.randn((20,) + SHAPE, generator=gen)).clamp(0, 1)
    x = invert_bn_statistics(model, 30, **KW)
    assert x.shape == (30,) + SHAPE and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert bn_statistics_loss(model, x[:20]) < 0.6 * bn_statistics_loss(model, noise)
    # the model is left untouched: weights, running statistics, mode, requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_targets_are_class_balanced_and_mostly_hit(model):
    x = invert_bn_statistics(model, 20, **{**KW, "steps": 60}, bn_weight=1.0)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert float((pred == torch.arange(20) % 10).float().mean()) >= 0.5


def test_deterministic_for_a_seed_and_prefix_stable(model):
    a = invert_bn_statistics(model, 30, **KW, seed=3)
    b = invert_bn_statistics(model, 30, **KW, seed=3)
    c = invert_bn_statistics(model, 30, **KW, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(invert_bn_statistics(model, 20, **KW, seed=3), a[:20])


def test_progress_and_errors(model):
    seen = []
    invert_bn_statistics(model, 5, **{**KW, "steps": 3, "batch_size": 5}, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(ConfigError):
        invert_bn_statistics(model, 0, **KW)
    with pytest.raises(ConfigError):
        invert_bn_statistics(model, 4, **{**KW, "image_shape": (8, 8)})
    no_bn = l2ul.create_model("mlp", num_classes=10, in_channels=1)
    with pytest.raises(ConfigError, match="BatchNorm2d"):
        invert_bn_statistics(no_bn, 4, **KW)


def test_cache_hit_is_identical_without_recomputation(model, tmp_path, monkeypatch):
    first = cached_synthesis(model, 12, tmp_path, **KW, seed=1)
    assert not first.from_cache and first.path.is_file() and first.path.parent == tmp_path / "synthesis"
    assert first.seconds > 0 and 0 <= first.in_class <= 1
    import l2ul.synthesis as syn

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(syn, "invert_bn_statistics", boom)
    second = cached_synthesis(model, 12, tmp_path, **KW, seed=1)
    assert second.from_cache and torch.equal(second.images, first.images)
    assert torch.equal(second.targets, first.targets) and second.seconds == first.seconds
    assert "12 images" in second.describe() and "from cache" in second.describe()
    # no partial files left behind
    assert [p.name for p in (tmp_path / "synthesis").iterdir()] == [first.path.name]


def test_cache_key_changes_with_weights_and_settings(model, tmp_path):
    p0, k0, _ = synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW)
    assert synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW)[1] == k0
    assert synthesis_cache_path(model, 12, cache_dir=tmp_path, **{**KW, "steps": 26})[1] != k0
    assert synthesis_cache_path(model, 13, cache_dir=tmp_path, **KW)[1] != k0
    h0 = state_dict_hash(model)
    with torch.no_grad():
        next(model.parameters())[0].view(-1)[0] += 1e-3
    assert state_dict_hash(model) != h0
    p1, k1, _ = synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW)
    assert k1 != k0 and p1 != p0
    with torch.no_grad():                               # running statistics count too
        next(b for n, b in model.named_buffers() if n.endswith("running_mean"))[0] += 1e-3
    assert synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW)[1] != k1
    with pytest.raises(ConfigError, match="unknown synthesis setting"):
        synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW, colour=3)


def test_damaged_cache_is_recomputed_and_env_dir(model, tmp_path, monkeypatch):
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path / "envcache"))
    kw = {**KW, "steps": 3}
    first = cached_synthesis(model, 6, **kw)
    assert first.path.parent == tmp_path / "envcache" / "synthesis"
    first.path.write_bytes(b"garbage")
    again = cached_synthesis(model, 6, **kw)
    assert not again.from_cache and torch.equal(again.images, first.images)
    assert cached_synthesis(model, 6, **kw).from_cache


# ---------------------------------------------------------------------------------------------- cheap ones


def test_adversarial_proxy(model):
    _, x, y = _trained()
    adv = adversarial_proxy(model, x[:3], y[:3], 10, per_instance=2, eps=1.0, steps=3, seed=0)
    assert adv.shape == (6,) + SHAPE and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert torch.equal(adv, adversarial_proxy(model, x[:3], y[:3], 10, per_instance=2, eps=1.0, steps=3, seed=0))


def test_mixup_augment_mix():
    g = torch.Generator().manual_seed(0)
    a = torch.rand((10,) + SHAPE, generator=g)
    b = torch.rand((4,) + SHAPE, generator=g)
    m = mixup_images(a, 25, seed=1)
    assert m.shape == (25,) + SHAPE and torch.equal(m, mixup_images(a, 25, seed=1))
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    aug = augment_images(a, 15, shift=2, seed=2)
    assert aug.shape == (15,) + SHAPE and torch.equal(aug, augment_images(a, 15, shift=2, seed=2))
    assert augment_images(a, 4, shift=0, flip=False, seed=0).unique(dim=0).shape[0] <= 4
    mixed = mix_sources([a, b], 12, weights=[1, 1], seed=0)
    assert mixed.shape == (12,) + SHAPE
    from_b = sum(any(torch.equal(r, s) for s in b) for r in mixed)
    assert from_b == 6                                   # b has only 4: drawn with replacement
    with pytest.raises(DataError):
        mix_sources([a, torch.rand(2, 3, 8, 8)], 4)
    with pytest.raises(DataError):
        mixup_images(torch.rand(0, 1, 8, 8), 3)


def test_cosine_schedule_is_its_own_cache_entry_and_reaches_the_repair(model, tmp_path, monkeypatch):
    """``synth_schedule`` (0.4): the default key is unchanged (old caches stay valid), cosine is a new entry,
    the repair passes the config's schedule to the synthesis, and a bad value is refused."""
    k_default = synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW)[1]
    assert synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW, lr_schedule="constant")[1] == k_default
    assert synthesis_cache_path(model, 12, cache_dir=tmp_path, **KW, lr_schedule="cosine")[1] != k_default
    const = invert_bn_statistics(model, 20, **KW)
    cos = invert_bn_statistics(model, 20, **KW, lr_schedule="cosine")
    assert not torch.equal(const, cos) and float(cos.min()) >= 0 and float(cos.max()) <= 1
    with pytest.raises(ConfigError, match="synth_schedule"):
        l2ul.UnlearnConfig(synth_schedule="linear")

    import l2ul.synthesis as syn

    seen = {}
    real = syn.cached_synthesis

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(syn, "cached_synthesis", spy)
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path))
    data = l2ul.load_dataset("digits")
    xf, yf = data.stack_train(range(4))
    cfg = l2ul.UnlearnConfig(seed=0, synth_images=40, synth_steps=3, synth_augment=0, repair_steps=2,
                             synth_schedule="cosine", max_steps=5)
    l2ul.unlearn(model, xf, yf, method="repair", config=cfg, progress=False)
    assert seen.get("lr_schedule") == "cosine"
    assert any(p.name.startswith("deepinversion-") for p in (tmp_path / "synthesis").iterdir())
