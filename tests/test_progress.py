"""Progress that tells the truth (#16): the adversarial bar advances per PGD iteration, the step bars show
their budget as a bound (no ETA of a budget the run will not spend), and the evaluation shows a bar."""
import torch

from _cli_helpers import FAST, pretrain_digits, run
from l2ul.attacks import generate_adversarial_set


def test_the_adversarial_progress_advances_per_pgd_iteration():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    seen = []
    generate_adversarial_set(model, x, y, 3, per_instance=2, steps=4, batch_size=4, progress=seen.append,
                             generator=torch.Generator().manual_seed(0))
    # 10 examples in batches of 4, 4, 2: four updates per batch (one per iteration) and one at its end
    assert len(seen) == 3 * 5 and seen == sorted(seen) and seen[-1] == 10
    assert seen[:5] == [1.0, 2.0, 3.0, 4.0, 4]


def test_unlearn_shows_step_bounds_and_evaluation_progress(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("L2UL_CACHE_DIR", str(tmp_path / "cache"))
    base = pretrain_digits(tmp_path / "base.safetensors")
    fast = [a for a in FAST if a != "--quiet"]
    rc, _, err = run(capsys, "unlearn", "--model", base, "--forget-ids", "3,17", "--method", "l2ul",
                     "--out", tmp_path / "u.safetensors", *fast)
    assert rc == 0, err
    assert "adversarial examples" in err and "of at most 300" in err          # the step budget as a bound
    for what in ("the original on D_r", "the original on D_test", "evaluating on D_r", "evaluating on D_test"):
        assert what in err, what


def test_the_api_shows_progress_by_default_only_on_a_terminal(monkeypatch):
    import io

    from l2ul._progress import auto_progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert auto_progress(None) is False and auto_progress(True) is True
    monkeypatch.setattr("sys.stderr", Tty())
    assert auto_progress(None) is True and auto_progress(False) is False
