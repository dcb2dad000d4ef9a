"""Checks every registered method passes (scikit-learn's ``test_common`` idea), a method plugged in from
outside (``tests/_plugin_method.py``) running through the API, the CLI and the bench without any change to
them, and the config's declared constraints."""
import copy

import pytest
import torch

import l2ul
from _digits import accuracy, digits_setup, forget_split
from l2ul import UnlearnConfig, unlearn
from l2ul.config import config_fields, invalid_values
from l2ul.errors import ConfigError

# small budgets: the paper's recipe scaled to 8x8 digits (see test_engine), a tiny data-free synthesis
CFG = UnlearnConfig(pgd_eps=0.5, pgd_steps=50, max_steps=1000, seed=0, retain_batch_size=32,
                    synth_images=64, synth_steps=20, repair_steps=60)


@pytest.fixture(scope="module")
def setup():
    model, xtr, ytr, xte, yte = digits_setup()
    ids, mask = forget_split(len(xtr), 8, seed=0)
    return model, xtr[ids], ytr[ids], (xtr[mask], ytr[mask]), (xte, yte)


def _data_for(name, retain):
    return {"retain": retain} if "retain" in l2ul.get_method(name).data else {}


@pytest.mark.parametrize("name", l2ul.list_methods())
def test_every_method_forgets_and_leaves_its_input_alone(setup, name):
    model, xf, yf, retain, _ = setup
    before = copy.deepcopy(model.state_dict())
    r = unlearn(model, xf, yf, method=name, config=CFG, data=_data_for(name, retain))
    assert r.converged, r.message
    assert r.forget_accuracy == 0.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the input model was modified"
    again = unlearn(model, xf, yf, method=name, config=CFG, data=_data_for(name, retain))
    a, b = r.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the same seed gave different weights"


@pytest.mark.parametrize("name", l2ul.list_methods())
def test_every_method_refuses_data_it_does_not_use(setup, name):
    model, xf, yf, retain, (xte, _) = setup
    m = l2ul.get_method(name)
    unused = {"retain": retain, "proxy": xte, "anchors": (xte[:2], torch.tensor([0, 1]))}
    for key, value in unused.items():
        if key in m.data + m.optional_data:
            continue
        with pytest.raises(ConfigError, match="do not pass"):
            unlearn(model, xf, yf, method=name, config=CFG, data={**_data_for(name, retain), key: value})
    if m.data:          # and refuses to run without the data it needs
        with pytest.raises(ConfigError, match="needs"):
            unlearn(model, xf, yf, method=name, config=CFG)


@pytest.mark.parametrize("f", [f for f in config_fields()], ids=lambda f: f.name)
def test_every_config_field_refuses_its_invalid_values(f):
    for bad in invalid_values(f):
        with pytest.raises(ConfigError) as e:
            UnlearnConfig().replace(**{f.name: bad})
        assert e.value.field == f.name and f.name in str(e.value)
    UnlearnConfig().replace(**{f.name: f.default})     # the default is valid


def test_every_config_field_is_a_flag_of_unlearn_and_bench():
    from l2ul.cli import build_parser

    parser = build_parser()
    subs = {a.dest: a for a in parser._actions if a.dest == "command"}["command"].choices
    for cmd in ("unlearn", "bench"):
        dests = {a.dest for a in subs[cmd]._actions}
        missing = [f.name for f in config_fields() if f.metadata["flag"] and f.name not in dests]
        assert not missing, (cmd, missing)


def test_cli_names_the_flag_of_a_bad_config_value(tmp_path, capsys):
    from l2ul.cli import main

    rc = main(["unlearn", "--arch", "resnet20", "--weights", str(tmp_path / "none.th"), "--forget-ids", "1",
               "--out", str(tmp_path / "o.safetensors"), "--pgd-eps", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "pgd_eps" in err and "--pgd-eps" in err


# ------------------------------------------------------------------------------------------ a plugin method

@pytest.fixture(scope="module")
def plugin():
    import _plugin_method  # noqa: F401  (registers "shrinkwrap" and its ingredient)

    yield "shrinkwrap"
    l2ul.methods.unregister_method("shrinkwrap")


def test_plugin_method_runs_through_the_api(setup, plugin):
    model, xf, yf, _, (xte, yte) = setup
    r = unlearn(model, xf, yf, method=plugin, config=CFG)
    assert r.converged and r.forget_accuracy == 0.0
    second = r.ingredients["second_choice"]
    with torch.no_grad():
        expected = model(xf).scatter(1, yf[:, None], float("-inf")).argmax(1)
    assert torch.equal(second, expected)                 # prepared on the original model, not the unlearned one
    assert r.timings["second_choice"] >= 0.0
    with_anchors = unlearn(model, xf, yf, method=plugin, config=CFG, data={"anchors": (xte[:32], yte[:32])})
    assert with_anchors.converged
    assert accuracy(with_anchors.model, xte[:32], yte[:32]) >= accuracy(r.model, xte[:32], yte[:32])


def test_plugin_method_runs_through_the_cli_and_bench(tmp_path, capsys, plugin):
    import json

    from l2ul.cli import main

    base = tmp_path / "base.safetensors"
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--epochs", "2", "--out", str(base),
                 "--quiet"]) == 0
    out = tmp_path / "u.safetensors"
    rc = main(["unlearn", "--model", str(base), "--forget-ids", "3,17", "--method", plugin, "--out", str(out),
               "--retain-eval-size", "100", "--quiet", "--bn", "freeze"])   # (bn=train may not hold: exit 5)
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "u.safetensors.report.json").read_text())
    assert report["method"] == plugin and report["metrics"]["acc_forget"] == 0.0
    rc = main(["bench", "--model", str(base), "--dataset", "digits", "--methods", f"neggrad,{plugin}", "--k", "2",
               "--retain-eval-size", "100", "--mia-max-samples", "100", "--out", str(tmp_path / "b"),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"neggrad", plugin}
    assert all(r["acc_forget"] == 0.0 for r in records if r["method"] == plugin)


def test_the_readme_lists_every_method_with_its_data_needs_and_source():
    """The README's method table names every method l2ul ships, with the data it needs and its source as the
    method declares them (what `l2ul info` prints)."""
    from pathlib import Path

    import l2ul
    from l2ul.methods import get_method, list_methods

    readme = (Path(l2ul.__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for name in list_methods():
        m = get_method(name)
        if not type(m).__module__.startswith("l2ul."):
            continue                                    # a test's plugin
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{name}`")]
        assert m.data_needs in row and m.source in row, name
