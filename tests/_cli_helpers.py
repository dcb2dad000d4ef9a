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
