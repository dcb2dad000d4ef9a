"""Hand-computed checks of l2ul.evaluation."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from l2ul.errors import DataError, L2ULError
from l2ul.evaluation import (
    MIA_MIN_SIGNAL_Z,
    MIAResult,
    ModelEvaluation,
    Predictions,
    accuracy,
    accuracy_from_predictions,
    agreement,
    as_loader,
    evaluate_model,
    evaluate_unlearning,
    loss_auc,
    mia_efficacy,
    mia_signal_z,
    peak_memory,
    per_instance,
    predict,
)

# A linear model with fixed weights: logits = W x.
W = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
X = [[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]]
Y = [0, 1, 1, 2]
# Hand logits: (2, 0, -2), (0, 1, -1), (1, 0, -1), (-1, -1, 2); predictions 0, 1, 0, 2 -> 3 of 4 correct.
HAND_LOGITS = [(2, 0, -2), (0, 1, -1), (1, 0, -1), (-1, -1, 2)]


def hand_ce(z, y):
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def linear_model():
    m = nn.Linear(2, 3, bias=True)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(W))
        m.bias.zero_()
    return m


def data():
    return torch.tensor(X), torch.tensor(Y)


def preds_from_conf(conf):
    """Two-class predictions, label 0, whose true-class confidence is exactly ``conf``."""
    p = torch.tensor(conf, dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()], dim=1)
    return Predictions(logits, torch.zeros(len(conf), dtype=torch.long))


def preds_from_loss(losses):
    """Two-class predictions, label 0, logits (0, z) with cross-entropy log(1 + e^z) == loss."""
    z = [math.log(math.exp(v) - 1) for v in losses]
    logits = torch.tensor([[0.0, v] for v in z])
    return Predictions(logits, torch.zeros(len(losses), dtype=torch.long))


def preds_from_labels(pred_labels, labels, num_classes=3, conf_logit=2.0):
    logits = torch.zeros(len(pred_labels), num_classes)
    logits[torch.arange(len(pred_labels)), torch.tensor(pred_labels)] = conf_logit
    return Predictions(logits, torch.tensor(labels))


# ------------------------------------------------------------------------------------------------ predict
def test_predict_hand_values():
    p = predict(linear_model(), data(), batch_size=3)
    assert torch.allclose(p.logits, torch.tensor(HAND_LOGITS, dtype=torch.float32))
    assert p.logits.dtype == torch.float32 and p.labels.dtype == torch.int64
    assert p.preds.tolist() == [0, 1, 0, 2]
    hand = [hand_ce(z, y) for z, y in zip(HAND_LOGITS, Y)]
    assert p.losses.tolist() == pytest.approx(hand, abs=1e-6)
    # sample 0: log(e^2 + 1 + e^-2) - 2 = 0.142931...
    assert p.losses[0].item() == pytest.approx(0.1429316, abs=1e-6)
    assert p.true_class_confidence.tolist() == pytest.approx([math.exp(-h) for h in hand], abs=1e-6)
    # confidence of the predicted class of sample 2 (pred 0, logits (1, 0, -1)): e / (e + 1 + e^-1)
    e = math.e
    assert p.pred_confidence[2].item() == pytest.approx(e / (e + 1 + 1 / e), abs=1e-6)
    assert p.probs.sum(1).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    assert not torch.is_inference(p.logits)


def test_accuracy_hand_value_and_input_forms():
    m = linear_model()
    x, y = data()
    assert accuracy(m, (x, y)) == pytest.approx(0.75)
    ds = TensorDataset(x, y)
    assert accuracy(m, ds, batch_size=1) == pytest.approx(0.75)
    assert accuracy(m, DataLoader(ds, batch_size=2)) == pytest.approx(0.75)
    assert accuracy(m, (x, y), device="cpu") == pytest.approx(0.75)
    assert accuracy_from_predictions(predict(m, (x, y))) == pytest.approx(0.75)


def test_as_loader_validation():
    x, y = data()
    assert isinstance(as_loader((x, y), 2), DataLoader)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    assert as_loader(loader) is loader
    with pytest.raises(DataError):
        as_loader((x, y[:2]))
    with pytest.raises(DataError):
        as_loader((x,))
    with pytest.raises(DataError):
        as_loader([1, 2, 3])
    with pytest.raises(DataError, match="labels must lie"):
        predict(linear_model(), (x, torch.tensor([0, 1, 5, 2])))
    with pytest.raises(DataError, match="float"):
        predict(linear_model(), (x.long(), y))
    with pytest.raises(DataError, match="empty"):
        accuracy_from_predictions(Predictions(torch.empty(0, 3), torch.empty(0, dtype=torch.long)))


def test_predict_restores_modes():
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    model.train()
    model[2].eval()  # a mixed state must come back exactly
    p1 = predict(model, data())
    p2 = predict(model, data())
    assert torch.equal(p1.logits, p2.logits)  # dropout was off during predict
    assert [m.training for m in model.modules()] == [True, True, True, False]
    model.eval()
    predict(model, data())
    assert not any(m.training for m in model.modules())


def test_predictions_subset():
    p = predict(linear_model(), data())
    s = p.subset([3, 0])
    assert s.labels.tolist() == [2, 0] and s.preds.tolist() == [2, 0]


# -------------------------------------------------------------------------------------------------- MIA
def _mia_data(seed=0):
    g = np.random.default_rng(seed)
    retain = preds_from_conf(g.uniform(0.95, 0.99, 200).tolist())
    test = preds_from_conf(g.uniform(0.2, 0.5, 150).tolist())
    return retain, test


@pytest.mark.parametrize("attack", ["svc", "logistic"])
def test_mia_efficacy_separable(attack):
    retain, test = _mia_data()
    high = preds_from_conf([0.97, 0.96, 0.98, 0.985])
    low = preds_from_conf([0.3, 0.25, 0.4, 0.45])
    r_high = mia_efficacy(retain, test, high, seed=0, attack=attack)
    r_low = mia_efficacy(retain, test, low, seed=0, attack=attack)
    assert isinstance(r_high, MIAResult)
    assert r_high.efficacy == 0.0  # D_f looks like training data: not forgotten
    assert r_low.efficacy == 1.0  # D_f looks like unseen data: forgotten
    assert r_high.attack_train_acc == 1.0 and r_high.tnr_test == 1.0
    assert r_high.n_per_class == 150  # min(len(retain), len(test))
    assert r_high.as_dict()["attack"] == attack


def test_mia_efficacy_deterministic_under_seed():
    g = np.random.default_rng(1)
    retain = preds_from_conf(g.uniform(0.4, 0.99, 300).tolist())  # overlapping: sampling matters
    test = preds_from_conf(g.uniform(0.2, 0.9, 300).tolist())
    forget = preds_from_conf(g.uniform(0.3, 0.99, 50).tolist())
    a = mia_efficacy(retain, test, forget, seed=3, max_samples=40)
    b = mia_efficacy(retain, test, forget, seed=3, max_samples=40)
    assert a == b
    assert a.n_per_class == 40
    assert 0.0 <= a.efficacy <= 1.0 and 0.5 <= a.attack_train_acc <= 1.0
    with pytest.raises(L2ULError):
        mia_efficacy(retain, test, forget, attack="nope")
    with pytest.raises(DataError):
        mia_efficacy(retain, test.subset([]), forget)


def test_mia_signal_z_hand_value():
    # z = (acc - 0.5) / sqrt(0.25 / (2 n)): 0.5277 on 2 x 5000 samples = 0.0277 / 0.005 = 5.54
    assert mia_signal_z(0.5277, 5000) == pytest.approx(5.54)
    assert mia_signal_z(0.5, 10) == 0.0
    assert math.isnan(mia_signal_z(None, 5000)) and math.isnan(mia_signal_z(0.6, 0))
    assert MIA_MIN_SIGNAL_Z == 3.0


def test_mia_chance_attack_is_flagged_uninformative():
    # retain and test confidences from the same distribution: no membership signal to find
    g = np.random.default_rng(0)
    retain = preds_from_conf(g.uniform(0.3, 0.9, 2000).tolist())
    test = preds_from_conf(g.uniform(0.3, 0.9, 2000).tolist())
    forget = preds_from_conf([0.1, 0.2])
    r = mia_efficacy(retain, test, forget, seed=0, attack="logistic")
    assert r.signal_z < MIA_MIN_SIGNAL_Z and not r.informative
    # a clearly separable pair is informative
    sep = mia_efficacy(*_mia_data(), forget, seed=0, attack="logistic")
    assert sep.informative and sep.signal_z == pytest.approx(mia_signal_z(1.0, 150))


# -------------------------------------------------------------------------------------------- loss AUC
def test_loss_auc_hand_value():
    forget = preds_from_loss([0.1, 0.2])
    test = preds_from_loss([0.15, 0.3, 0.4])
    assert forget.losses.tolist() == pytest.approx([0.1, 0.2], abs=1e-5)
    # pairs (f, t) with f < t: 0.1 beats all 3, 0.2 beats 0.3 and 0.4 -> 5 of 6
    assert loss_auc(forget, test) == pytest.approx(5 / 6)
    # ties count one half: forget [0.2] vs test [0.2, 0.5] -> (0.5 + 1) / 2
    assert loss_auc(preds_from_loss([0.2]), preds_from_loss([0.2, 0.5])) == pytest.approx(0.75, abs=1e-6)
    # D_f with higher loss than all unseen data: 0 (over-forgetting)
    assert loss_auc(preds_from_loss([0.9, 1.0]), test) == 0.0


# ------------------------------------------------------------------------------------ agreement, per-instance
def test_agreement():
    a = preds_from_labels([0, 1, 2, 0], [0, 1, 2, 0])
    b = preds_from_labels([0, 1, 1, 1], [0, 1, 2, 0])
    assert agreement(a, b) == pytest.approx(0.5)
    assert agreement(a, a) == 1.0
    with pytest.raises(DataError):
        agreement(a, a.subset([0]))


def test_per_instance_misclassify():
    before = preds_from_labels([0, 1, 2], [0, 1, 2])
    after = preds_from_labels([1, 1, 0], [0, 1, 2])
    rows = per_instance(before, after, ids=[10, 11, 12])
    assert [r["id"] for r in rows] == [10, 11, 12]
    assert [r["forgotten"] for r in rows] == [True, False, True]
    assert [r["pred_before"] for r in rows] == [0, 1, 2]
    assert [r["pred_after"] for r in rows] == [1, 1, 0]
    assert all(r["target"] is None for r in rows)
    conf = math.exp(2) / (math.exp(2) + 2)  # logits (2, 0, 0)
    assert rows[0]["confidence_before"] == pytest.approx(conf, abs=1e-6)
    assert rows[0]["confidence_after"] == pytest.approx(conf, abs=1e-6)
    assert per_instance(before, after)[2]["id"] == 2  # default ids are positions


def test_per_instance_relabel():
    before = preds_from_labels([0, 1, 2], [0, 1, 2])
    after = preds_from_labels([1, 2, 1], [0, 1, 2])
    rows = per_instance(before, after, ids=["a", "b", "c"], targets=torch.tensor([1, 0, 1]))
    assert [r["target"] for r in rows] == [1, 0, 1]
    # relabel: forgotten only when the new prediction is the requested target
    assert [r["forgotten"] for r in rows] == [True, False, True]
    with pytest.raises(DataError):
        per_instance(before, after, targets=[1, 2])


# ----------------------------------------------------------------------------------------- end to end
def _tiny_setup():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 4, generator=g))
        model[1].bias.zero_()

    def split(n):
        x = torch.rand(n, 1, 2, 2, generator=g)
        with torch.no_grad():
            y = model(x).argmax(1)  # the original model is right on every sample
        return x, y

    forget, retain, test = split(4), split(30), split(20)
    unlearned = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    unlearned.load_state_dict(model.state_dict())
    with torch.no_grad():
        unlearned[1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # pushes most predictions to class 0
    return model, unlearned, forget, retain, test


def test_evaluate_unlearning_end_to_end():
    model, unlearned, forget, retain, test = _tiny_setup()
    res = evaluate_unlearning(model, unlearned, forget=forget, retain=retain, test=test, ids=[7, 8, 9, 10])
    assert res["acc_forget_before"] == res["acc_retain_before"] == res["acc_test_before"] == 1.0
    for split, d in (("forget", forget), ("retain", retain), ("test", test)):
        assert res[f"acc_{split}"] == pytest.approx(accuracy(unlearned, d))
    assert res["n_forget"] == 4 and res["n_retain"] == 30 and res["n_test"] == 20
    assert [r["id"] for r in res["per_instance"]] == [7, 8, 9, 10]
    labels = forget[1].tolist()
    after_preds = [r["pred_after"] for r in res["per_instance"]]
    assert res["forget_success"] == pytest.approx(np.mean([p != y for p, y in zip(after_preds, labels)]))
    after_test = predict(unlearned, test).preds
    assert res["agreement_test"] == pytest.approx((after_test == test[1]).float().mean().item())
    for key in ("mia_efficacy", "mia_tnr_test", "mia_attack_train_acc", "loss_auc"):
        assert 0.0 <= res[key] <= 1.0 and 0.0 <= res[f"{key}_before"] <= 1.0
    assert res["mia_n_per_class"] == 20

    # precomputed original predictions / evaluation give the same result
    splits = dict(forget=forget, retain=retain, test=test)
    orig_eval = evaluate_model(model, **splits)
    assert isinstance(orig_eval, ModelEvaluation)
    res2 = evaluate_unlearning(orig_eval.predictions, unlearned, ids=[7, 8, 9, 10], **splits)
    res3 = evaluate_unlearning(orig_eval, unlearned, ids=[7, 8, 9, 10], **splits)
    assert res2 == res and res3 == res
    with pytest.raises(L2ULError, match="MIA settings"):
        evaluate_unlearning(orig_eval, unlearned, seed=1, **splits)


def test_evaluate_unlearning_relabel_and_mismatch():
    model, unlearned, forget, retain, test = _tiny_setup()
    splits = dict(forget=forget, retain=retain, test=test)
    res = evaluate_unlearning(model, unlearned, targets=[0, 0, 0, 0], mia_attack="logistic", **splits)
    after_preds = [r["pred_after"] for r in res["per_instance"]]
    assert res["forget_success"] == pytest.approx(np.mean([p == 0 for p in after_preds]))
    full = evaluate_model(model, **splits).predictions
    with pytest.raises(DataError, match="different samples"):
        evaluate_unlearning(full, unlearned, forget=forget, retain=retain,
                            test=(test[0][:5], test[1][:5]), mia_attack="logistic")
    with pytest.raises(L2ULError):
        evaluate_unlearning({"forget": None}, unlearned, **splits)


def test_peak_memory():
    mem = peak_memory()
    assert mem["max_rss_mib"] > 0
    if torch.cuda.is_available():
        assert "cuda_max_allocated_mib" in mem


def test_the_default_prediction_batch_is_chosen_by_device_and_changes_no_prediction():
    """eval_batch_size None (the default) is 64 on the CPU and 1024 on an accelerator, an explicit value wins;
    on a CIFAR ResNet-20 the CPU default predicts what batches of 1024 predict (BENCHMARKS.md section 6 measured
    the logits bit-identical; here, on any CI CPU, to float tolerance)."""
    from l2ul.config import UnlearnConfig
    from l2ul.models import create_model

    cfg = UnlearnConfig()
    assert cfg.eval_batch_size is None
    assert cfg.eval_batch("cpu") == 64 and cfg.eval_batch(torch.device("cpu")) == 64 and cfg.eval_batch() == 64
    assert cfg.eval_batch("cuda:1") == 1024 and cfg.eval_batch(torch.device("mps")) == 1024
    assert UnlearnConfig(device="cuda").eval_batch() == 1024
    assert UnlearnConfig(eval_batch_size=7).eval_batch("cuda") == 7
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    x, y = torch.rand(200, 3, 32, 32), torch.randint(0, 10, (200,))
    small, large = predict(model, (x, y)), predict(model, (x, y), batch_size=1024)
    assert torch.allclose(small.logits, large.logits, atol=1e-5, rtol=0)
    assert torch.equal(small.preds, large.preds)
