"""The unseen task's forget phase alone on the shared ResNet-20 at k = 64 (seed 0): does it reach the bands?

Prints steps to the bands (or the share in band when the budget ran out) and the time for each
``unseen_min_band`` given. Behind the 0.4 defaults (BENCHMARKS.md section 7): with bands exactly 1/64 wide the
phase did not converge in 1,000 steps (the bench cell's D_r fell to 80.2 on the way), with a smallest band of
0.05 it did. The phase also takes the whole forget set at every step since then; with batches of 32 it needed
287 steps at min band 0.05 and 80 with the whole set (measured while developing, before that change).

    OMP_NUM_THREADS=1 python benchmarks/unseen_band_probe.py ../shared 0 0.05
"""
import sys
import time

from l2ul import UnlearnConfig, unlearn
from l2ul.bench.proxy import proxy_reference, split_test
from l2ul.data import load_dataset
from l2ul.loading import load_model_from
from l2ul.requests import random_forget_ids


def main(shared: str, widths) -> None:
    b = load_dataset(f"cifar10-jpeg:{shared}/datasets/cifar10_jpeg.npz")
    net = load_model_from(arch="resnet20", weights=f"{shared}/datasets/pretrained/cifar10_resnet20-12fca82f.th")
    xf, yf = b.stack_train(random_forget_ids(64, n_train=b.n_train, seed=0))
    ref = proxy_reference(b, split_test(b, 5000)[0])         # the bench's reference split
    print("| unseen_min_band | status | steps | share in band | s |\n|---:|---|---:|---:|---:|")
    for w in widths:
        t = time.perf_counter()
        cfg = UnlearnConfig(unseen_min_band=w, repair_steps=0, max_steps=400)
        r = unlearn(net, xf, yf, task="unseen", reference=ref, data={"proxy": ref[0][:600]}, config=cfg)
        print(f"| {w:g} | {r.status} | {r.steps} | {r.forget_history[-1]:.3f} | {time.perf_counter() - t:.0f} |",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared", [float(w) for w in sys.argv[2:]] or [0.0, 0.05])
