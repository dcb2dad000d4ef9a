"""What several commands print or share: exit codes, stderr lines, the privacy lines."""
from __future__ import annotations

import sys

EXIT_USER_ERROR, EXIT_NOT_CONVERGED, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 4, 130
EXIT_DOES_NOT_HOLD = 5  # converged, but the forgetting does not hold with the original batch-norm statistics
EXIT_TERMINATED = 128 + 15  # SIGTERM


def eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def mia_caveat(metrics) -> str:
    """`` -- uninformative ...`` when the MIA attack on the unlearned model did no better than chance."""
    from ..evaluation import MIA_MIN_SIGNAL_Z

    z = metrics.get("mia_signal_z")  # stored by evaluation.split_metrics
    if z is not None and z < MIA_MIN_SIGNAL_Z:
        return (f" -- uninformative: the attack is at chance on D_r vs D_test (z = {z:.1f} < "
                f"{MIA_MIN_SIGNAL_Z:g}); read the loss AUC")
    return ""


def privacy_line(metrics) -> str:
    before = metrics.get("mia_efficacy_before")
    line = (f"MIA efficacy (share of D_f judged non-member): {100 * metrics['mia_efficacy']:.1f}%"
            + (f" (original {100 * before:.1f}%)" if before is not None else "") + mia_caveat(metrics))
    if metrics.get("loss_auc") is not None:
        auc_before = metrics.get("loss_auc_before")
        line += (f"\nloss AUC (D_f vs D_test losses; 0.5 = like unseen data): {metrics['loss_auc']:.3f}"
                 + (f" (original {auc_before:.3f})" if auc_before is not None else ""))
    return line
