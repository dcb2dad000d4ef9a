"""Helpers shared by the CLI and reliability tests."""
import hashlib
from pathlib import Path

from l2ul.cli import main


def run(capsys, *argv):
    """``l2ul ARGV`` in-process -> (exit code, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_user_error(rc, err, *words):
    """Exit 2, exactly one line ``l2ul: error: ...`` on stderr naming ``words``, no traceback."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2ul: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


#: tiny, fast unlearning settings for the CLI tests (digits images are 1x8x8)
# small settings for CLI runs on the digits CNN; batch norm frozen, so the paper methods' forgetting lives
# in the weights and their runs succeed (with bn=train it often does not hold: exit code 5, no model)
FAST = ["--pgd-steps", "10", "--adv-per-instance", "2", "--pgd-eps", "0.5", "--max-steps", "300",
        "--retain-eval-size", "300", "--quiet", "--synth-images", "64", "--synth-steps", "20", "--repair-steps", "50",
        "--bn", "freeze"]


def pretrain_digits(out) -> Path:
    """``l2ul pretrain`` a small CNN on digits (3 quick epochs) to ``out``: a test's original model."""
    assert main(["pretrain", "--arch", "small_cnn", "--dataset", "digits", "--recipe", "quick", "--epochs", "3",
                 "--out", str(out), "--quiet"]) == 0
    return Path(out)
