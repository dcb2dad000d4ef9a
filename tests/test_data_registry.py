"""Tests for the dataset registry (l2ul.data._registry): registration, listing, spec checks, unknown specs."""
from pathlib import Path

import numpy as np
import pytest

import l2ul.data
from l2ul.data import (
    ArrayImageDataset,
    DatasetBundle,
    LoadArgs,
    _registry,
    describe_specs,
    list_datasets,
    load_dataset,
    register_dataset,
)
from l2ul.errors import DataError

BUILTIN = ["digits", "npz", "cifar10-jpeg", "cifar10", "cifar100", "fashion-mnist", "imagefolder", "imagenet",
           "utkface"]
BUILTIN_USAGE = ["digits", "npz:PATH", "cifar10-jpeg:PATH", "cifar10", "cifar100", "fashion-mnist",
                 "imagefolder:PATH[?resize=R&crop=C]", "imagenet:PATH", "utkface:PATH[?grouping=NAME]"]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register into a copy of the registry, so datasets a test registers are gone after it."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    return monkeypatch


def test_builtin_datasets_listed_in_order():
    assert list_datasets() == BUILTIN
    lines = describe_specs().splitlines()
    assert [line.split()[0] for line in lines] == BUILTIN_USAGE
    assert [s for s, _ in l2ul.data.DATASET_SPECS] == BUILTIN_USAGE
    width = max(len(u) for u in BUILTIN_USAGE)
    assert lines[0] == "  " + "digits".ljust(width) + "  scikit-learn 8x8 digits, offline (1437 train / 360 " \
                                                      "test, stratified, random_state=0)"


def test_register_and_load_a_tiny_dataset(scratch_registry):
    seen = []

    @register_dataset("mytiny", help="four 2x2 grey images, for the registry test")
    def _mytiny(args: LoadArgs) -> DatasetBundle:
        seen.append(args)
        x = np.arange(16, dtype=np.uint8).reshape(4, 2, 2)
        y = np.array([0, 1, 0, 1])
        train, test = ArrayImageDataset(x, y), ArrayImageDataset(x[:2], y[:2])
        return DatasetBundle(name="mytiny", train=train, test=test, num_classes=2, class_names=["even", "odd"],
                             input_shape=(1, 2, 2), train_ids=list(range(4)), train_labels=y,
                             test_labels=y[:2])

    b = load_dataset("mytiny")
    assert (b.name, b.n_train, b.n_test, b.class_names) == ("mytiny", 4, 2, ["even", "odd"])
    assert b.stack_train([1])[0].shape == (1, 1, 2, 2)
    assert seen[0] == LoadArgs(spec="mytiny", name="mytiny", path=None, options={}, data_dir=None,
                               download=False, augment=False)
    assert list_datasets() == BUILTIN + ["mytiny"]
    assert describe_specs().splitlines()[-1].split(None, 1) == ["mytiny", "four 2x2 grey images, for the "
                                                                          "registry test"]
    assert ("mytiny", "four 2x2 grey images, for the registry test") in l2ul.data.DATASET_SPECS
    with pytest.raises(DataError) as e:
        load_dataset("mytiny-typo")
    assert "mytiny" in str(e.value)
    # the registry's own checks apply to every dataset
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("mytiny:somewhere")
    with pytest.raises(DataError, match="takes no options"):
        load_dataset("mytiny?size=3")

    scratch_registry.undo()
    assert "mytiny" not in list_datasets() and "mytiny" not in describe_specs()


def test_register_a_dataset_with_a_path_and_options(scratch_registry, tmp_path):
    seen = []

    @register_dataset("mypath", takes_path=True, options=("scale",), usage="mypath:PATH[?scale=S]",
                      aliases=("my-path",))
    def _mypath(args: LoadArgs) -> DatasetBundle:
        """Records its arguments (the docstring's first line is the default help)."""
        seen.append(args)
        return load_dataset("digits")

    assert load_dataset("My-Path:~/x?scale=2", data_dir=tmp_path, download=True, augment=True).name == "digits"
    assert seen[0] == LoadArgs(spec="My-Path:~/x?scale=2", name="mypath", path=Path("~/x").expanduser(),
                               options={"scale": "2"}, data_dir=tmp_path, download=True, augment=True)
    assert "mypath:PATH[?scale=S]" in describe_specs() and "Records its arguments" in describe_specs()
    assert list_datasets()[-1] == "mypath"  # aliases are not listed
    with pytest.raises(DataError, match=r"^dataset spec 'mypath' needs a path: use mypath:PATH$"):
        load_dataset("mypath")
    with pytest.raises(DataError, match=r"^mypath: unknown option\(s\) zoom; valid: scale$"):
        load_dataset("mypath:x?zoom=1")
    assert len(seen) == 1  # refused specs never reach the loader


def test_register_rejects_taken_and_malformed_names(scratch_registry):
    for name in ("digits", "fashionmnist", "Upper", "a:b", "a?b", "", "two words"):
        with pytest.raises(ValueError):
            register_dataset(name, help="x")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("fresh", aliases=("npz",), help="x")
    assert list_datasets() == BUILTIN


def test_unknown_spec_is_one_data_error_listing_every_dataset():
    with pytest.raises(DataError) as e:
        load_dataset("no-such-set:/x?a=1")
    msg = str(e.value)
    assert msg == f"unknown dataset spec 'no-such-set:/x?a=1'; valid specs:\n{describe_specs()}"
    for usage in BUILTIN_USAGE:
        assert f"\n  {usage} " in msg
