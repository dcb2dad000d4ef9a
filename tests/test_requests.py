"""Tests for l2ul.requests: parsing and validating deletion requests."""
import numpy as np
import pytest

from l2ul.errors import L2ULError, RequestError
from l2ul.requests import (
    DeletionRequest,
    build_request,
    parse_forget_ids,
    parse_relabel_targets,
    random_forget_ids,
)

N = 100


# ----------------------------------------------------------------------------------------------------------
# parse_forget_ids
# ----------------------------------------------------------------------------------------------------------


def test_comma_list_keeps_order():
    assert parse_forget_ids("3,17,42", n_train=N) == [3, 17, 42]
    assert parse_forget_ids(" 42 , 3 ", n_train=N) == [42, 3]
    assert parse_forget_ids("0", n_train=N) == [0]
    assert parse_forget_ids("99", n_train=N) == [99]


def test_file_with_comments_and_blank_lines(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# forget these\n3\n\n17   # a comment\n  42\n# 5\n")
    assert parse_forget_ids(f"@{f}", n_train=N) == [3, 17, 42]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"\xef\xbb\xbf1\r\n2\r\n")  # BOM + Windows line ends
    assert parse_forget_ids(f"@{crlf}", n_train=N) == [1, 2]


@pytest.mark.parametrize("value, match", [
    ("", "empty"),
    ("   ", "empty"),
    ("abc", "'abc' is not an integer index"),
    ("3,abc", "'abc' is not an integer index"),
    ("1.5", "'1.5' is not an integer index"),
    ("-1", "negative"),
    ("3,-4", "-4 is negative"),
    ("100", r"out of range; valid training indices are 0\.\.99"),
    ("3,17,3,17,5", "duplicate forget ids: 3, 17"),
    ("3,,4", "empty entry"),
    ("missing_ids.txt", r"'missing_ids.txt' is not an integer index.*or @FILE"),
    ("@missing_ids.txt", "does not exist"),
    ("@", "needs a file name after '@'"),
])
def test_forget_id_errors(value, match):
    with pytest.raises(RequestError, match=match):
        parse_forget_ids(value, n_train=N)


def test_forget_id_errors_in_file_name_the_line(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("1\n2\nthree\n")
    with pytest.raises(RequestError, match=r"line 3 of .*ids\.txt: 'three' is not an integer index"):
        parse_forget_ids(f"@{f}", n_train=N)
    only_comments = tmp_path / "empty.txt"
    only_comments.write_text("# nothing\n\n")
    with pytest.raises(RequestError, match="holds no ids"):
        parse_forget_ids(f"@{only_comments}", n_train=N)
    with pytest.raises(RequestError, match="directory"):
        parse_forget_ids(f"@{tmp_path}", n_train=N)


def test_errors_are_one_line_l2ul_errors():
    with pytest.raises(L2ULError) as e:
        parse_forget_ids("1,1", n_train=N)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


TRAIN_PATHS = ["train/ant/00.png", "train/ant/01.png", "train/bee/00.png", "train/cow/00.png"]


def test_file_path_ids(tmp_path):
    assert parse_forget_ids("train/bee/00.png,0", n_train=4, train_ids=TRAIN_PATHS) == [2, 0]
    # unique suffix, ./ prefix, backslashes and an absolute path ending in a known id are accepted
    assert parse_forget_ids("cow/00.png", n_train=4, train_ids=TRAIN_PATHS) == [3]
    assert parse_forget_ids("./train/ant/01.png", n_train=4, train_ids=TRAIN_PATHS) == [1]
    assert parse_forget_ids("train\\ant\\01.png", n_train=4, train_ids=TRAIN_PATHS) == [1]
    assert parse_forget_ids("/data/set/train/cow/00.png", n_train=4, train_ids=TRAIN_PATHS) == [3]
    f = tmp_path / "paths.txt"
    f.write_text("train/cow/00.png\n# comment\ntrain/ant/00.png\n")
    assert parse_forget_ids(f"@{f}", n_train=4, train_ids=TRAIN_PATHS) == [3, 0]
    with pytest.raises(RequestError, match="not a training file of this dataset"):
        parse_forget_ids("train/dog/00.png", n_train=4, train_ids=TRAIN_PATHS)
    with pytest.raises(RequestError, match="matches 3 training files"):
        parse_forget_ids("00.png", n_train=4, train_ids=TRAIN_PATHS)
    with pytest.raises(RequestError, match="duplicate forget ids: 2"):
        parse_forget_ids("train/bee/00.png,2", n_train=4, train_ids=TRAIN_PATHS)


def test_integer_train_ids_do_not_enable_paths():
    with pytest.raises(RequestError, match="not an integer index"):
        parse_forget_ids("cat", n_train=N, train_ids=list(range(N)))


# ----------------------------------------------------------------------------------------------------------
# random_forget_ids
# ----------------------------------------------------------------------------------------------------------


def test_random_ids_reproducible_distinct_nested():
    a = random_forget_ids(8, n_train=N, seed=0)
    assert a == random_forget_ids(8, n_train=N, seed=0)
    assert a != random_forget_ids(8, n_train=N, seed=1)
    assert len(set(a)) == 8 and a == sorted(a) and all(0 <= i < N for i in a)
    assert set(random_forget_ids(4, n_train=N, seed=0)) <= set(a)  # nested across k for one seed
    assert random_forget_ids(N, n_train=N, seed=3) == list(range(N))
    assert all(isinstance(i, int) for i in a)


@pytest.mark.parametrize("k, match", [(0, "at least 1"), (-2, "at least 1"), (N + 1, "exceeds the 100"),
                                      (2.5, "not an integer"), (True, "not an integer")])
def test_random_ids_errors(k, match):
    with pytest.raises(RequestError, match=match):
        random_forget_ids(k, n_train=N, seed=0)


def test_random_ids_label_length_check():
    with pytest.raises(RequestError, match="labels"):
        random_forget_ids(3, n_train=N, seed=0, labels=np.zeros(N - 1, dtype=np.int64))
    assert len(random_forget_ids(3, n_train=N, seed=0, labels=np.zeros(N, dtype=np.int64))) == 3


# ----------------------------------------------------------------------------------------------------------
# parse_relabel_targets
# ----------------------------------------------------------------------------------------------------------


def test_relabel_random_never_current_and_reproducible():
    labels = np.random.default_rng(0).integers(0, 10, size=500)
    t = parse_relabel_targets("random", labels=labels, num_classes=10, seed=0)
    assert len(t) == 500 and all(0 <= x < 10 for x in t)
    assert not np.any(np.asarray(t) == labels)
    assert t == parse_relabel_targets("RANDOM", labels=labels, num_classes=10, seed=0)
    assert t != parse_relabel_targets("random", labels=labels, num_classes=10, seed=1)
    # every other class is reachable (uniform over the 9 others)
    counts = np.bincount(np.asarray(t)[labels == 4], minlength=10)
    assert counts[4] == 0 and np.all(np.delete(counts, 4) > 0)
    # two classes: the only possible target is the other one
    assert parse_relabel_targets("random", labels=np.array([0, 1, 1]), num_classes=2, seed=5) == [1, 0, 0]


def test_relabel_file_and_list(tmp_path):
    labels = np.array([3, 0, 7])
    f = tmp_path / "targets.txt"
    f.write_text("# new labels\n1\n\n2\n5  # last\n")
    assert parse_relabel_targets(f"@{f}", labels=labels, num_classes=10, seed=0) == [1, 2, 5]
    assert parse_relabel_targets("1,2,5", labels=labels, num_classes=10, seed=0) == [1, 2, 5]
    names = [f"c{i}" for i in range(10)]
    assert parse_relabel_targets("c1,2,c5", labels=labels, num_classes=10, seed=0, class_names=names) == [1, 2, 5]


@pytest.mark.parametrize("value, match", [
    ("1,2", "2 targets were given but there are 3 forget ids"),
    ("1,2,5,6", "4 targets were given but there are 3 forget ids"),
    ("1,x,5", "'x' is not an integer"),
    ("1,10,5", r"outside 0\.\.9"),
    ("1,-1,5", r"outside 0\.\.9"),
    ("1,0,5", "instance 17 already has label 0; a relabel target must differ from it"),
    ("", "empty"),
    ("nope.txt", r"'nope.txt' is not an integer.*'random', a comma list of targets, or @FILE"),
    ("@nope.txt", "does not exist"),
])
def test_relabel_errors(value, match):
    with pytest.raises(RequestError, match=match):
        parse_relabel_targets(value, labels=np.array([3, 0, 7]), num_classes=10, seed=0, ids=[4, 17, 42])


def test_relabel_file_count_mismatch_and_position_names(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("1\n2\n")
    with pytest.raises(RequestError, match=r"file .*t\.txt has 2 targets but there are 3 forget ids"):
        parse_relabel_targets(f"@{f}", labels=np.array([3, 0, 7]), num_classes=10, seed=0)
    f.write_text("1\n2\n7\n")
    with pytest.raises(RequestError, match="line 3 .*forget entry 3 already has label 7"):
        parse_relabel_targets(f"@{f}", labels=np.array([3, 0, 7]), num_classes=10, seed=0)
    with pytest.raises(RequestError, match="at least 2 classes"):
        parse_relabel_targets("random", labels=np.array([0]), num_classes=1, seed=0)


# ----------------------------------------------------------------------------------------------------------
# DeletionRequest / build_request
# ----------------------------------------------------------------------------------------------------------


def test_deletion_request_dict_round_trip():
    r = DeletionRequest(ids=[3, 17], targets=[1, 2], task="relabel", source="--forget-ids 3,17")
    d = r.to_dict()
    assert d == {"task": "relabel", "k": 2, "ids": [3, 17], "targets": [1, 2], "source": "--forget-ids 3,17"}
    assert DeletionRequest.from_dict(d) == r
    m = DeletionRequest(ids=[5], source="x")
    assert m.task == "misclassify" and m.to_dict()["targets"] is None and m.k == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(ids=[]), "at least one"),
    (dict(ids=[1], task="erase"), "unknown task"),
    (dict(ids=[1], task="relabel"), "needs targets"),
    (dict(ids=[1, 2], targets=[3], task="relabel"), "one target per id"),
    (dict(ids=[1], targets=[3]), "misclassify"),
])
def test_deletion_request_validation(kwargs, match):
    with pytest.raises(RequestError, match=match):
        DeletionRequest(**kwargs)


def test_build_request():
    labels = np.arange(N) % 10
    r = build_request(n_train=N, train_labels=labels, num_classes=10, forget_random=5, seed=2)
    assert r.task == "misclassify" and r.ids == random_forget_ids(5, n_train=N, seed=2)
    assert "--forget-random 5" in r.source
    rr = build_request(n_train=N, train_labels=labels, num_classes=10, forget_ids="3,17", relabel_to="random",
                       seed=0)
    assert rr.task == "relabel" and rr.ids == [3, 17] and rr.targets[0] != 3 and rr.targets[1] != 7
    with pytest.raises(RequestError, match="exactly one"):
        build_request(n_train=N, train_labels=labels, num_classes=10)
    with pytest.raises(RequestError, match="exactly one"):
        build_request(n_train=N, train_labels=labels, num_classes=10, forget_ids="1", forget_random=1)
