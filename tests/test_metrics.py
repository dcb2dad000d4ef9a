"""The metric registry (l2ul.metrics): every key an evaluation returns is described, labels, formatting."""
import copy

import pytest
import torch

from _digits import digits_setup, forget_split
from l2ul.errors import L2ULError
from l2ul.evaluation import evaluate_unlearning
from l2ul.metrics import (
    DIRECTIONS,
    NON_METRIC_KEYS,
    MetricInfo,
    format_metric,
    list_metrics,
    metric_info,
    register_metric,
    unregister_metric,
)


@pytest.fixture(scope="module")
def digits_evaluation():
    model, xtr, ytr, xte, yte = digits_setup()
    ids, mask = forget_split(len(xtr), 8, seed=0)
    unlearned = copy.deepcopy(model)
    with torch.no_grad():
        unlearned.fc.bias[ytr[ids[0]]] -= 5.0   # a different model: some D_f predictions change
    return evaluate_unlearning(model, unlearned, forget=(xtr[ids], ytr[ids]), retain=(xtr[mask][:200], ytr[mask][:200]),
                               test=(xte[:200], yte[:200]), mia_attack="logistic")


def test_every_evaluation_key_is_registered_or_listed_as_non_metric(digits_evaluation):
    keys = set(digits_evaluation)
    unknown = sorted(k for k in keys if k not in NON_METRIC_KEYS and k.removesuffix("_before") not in list_metrics())
    assert not unknown, f"evaluation keys without a registry entry: {unknown}"
    assert set(NON_METRIC_KEYS) <= keys
    for key in keys - set(NON_METRIC_KEYS):
        info = metric_info(key)
        assert info.key == key and info.label and info.meaning and info.direction in DIRECTIONS
        assert isinstance(format_metric(key, digits_evaluation[key]), str)
    # and every registered metric is one the evaluation produces (no stale entries)
    assert set(list_metrics()) <= keys


def test_labels_and_directions():
    assert [metric_info(k).label for k in ("acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_auc")] == [
        "D_f (%)", "D_r (%)", "D_test (%)", "MIA eff. (%)", "loss AUC"]
    assert metric_info("acc_retain").better == "higher is better"
    assert metric_info("acc_forget").better == "lower is better"
    assert metric_info("loss_auc").better == "0.5 is ideal"
    assert metric_info("acc_retain").percent and not metric_info("loss_auc").percent
    before = metric_info("acc_test_before")
    assert before.key == "acc_test_before" and before.label == "D_test (%)" and "original model" in before.meaning


def test_format_metric():
    assert format_metric("acc_retain", 0.95123) == "95.12%"
    assert format_metric("acc_retain_before", 1.0) == "100.00%"
    assert format_metric("mia_efficacy", 0) == "0.00%"
    assert format_metric("loss_auc", 0.5) == "0.500"
    assert format_metric("mia_n_per_class", 200) == "200"
    assert format_metric("acc_test", None) == "-"
    assert format_metric("acc_test", float("nan")) == "nan"


def test_unknown_metric_names_the_registered_ones():
    with pytest.raises(L2ULError, match="unknown metric 'nope'.*acc_forget"):
        metric_info("nope")
    with pytest.raises(L2ULError, match="unknown metric"):
        format_metric("nope_before", 1.0)


def test_register_and_unregister_a_metric():
    info = register_metric("my_score", "score", percent=False, meaning="a plugin's score", direction="lower",
                           decimals=1)
    try:
        assert isinstance(info, MetricInfo) and metric_info("my_score") is info
        assert list_metrics()[-1] == "my_score"
        assert format_metric("my_score", 2.25) == "2.2"
        assert format_metric("my_score_before", 3.0) == "3.0"
    finally:
        unregister_metric("my_score")
    assert "my_score" not in list_metrics()
    with pytest.raises(L2ULError, match="direction"):
        register_metric("bad", "bad", percent=False, meaning="x", direction="up")
    with pytest.raises(L2ULError, match="register the metric 'x'"):
        register_metric("x_before", "x", percent=False, meaning="x", direction=None)
    assert "bad" not in list_metrics()


def test_metric_rows_print_what_the_registry_says_including_a_plugin_metric():
    from l2ul.metrics import metric_rows, register_metric, unregister_metric

    register_metric("toy_score", "toy (%)", percent=True, meaning="a plugin's metric", direction="lower")
    try:
        rows = metric_rows({"acc_retain": 0.8412, "acc_retain_before": 0.8573, "toy_score": 0.5, "n_test": 9})
    finally:
        unregister_metric("toy_score")
    assert rows == [
        {"metric": "D_r (%)", "before": "85.73%", "after": "84.12%", "better": "higher is better"},
        {"metric": "toy (%)", "before": "", "after": "50.00%", "better": "lower is better"},
    ]
    assert metric_rows({"acc_test": None, "acc_test_before": 0.9}, ["acc_test", "acc_forget"]) == [
        {"metric": "D_test (%)", "before": "90.00%", "after": "-", "better": "higher is better"}]
