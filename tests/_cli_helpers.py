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
