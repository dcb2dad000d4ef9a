"""Does ``torch.compile`` or channels-last make l2ul's inner loops faster on this machine? (issue #12)

Times, in one process, the two loops a default request spends its time in, on the shared CIFAR-10
ResNet-20 with random inputs of its shape: a repair step (forward + backward of 144 images, the proxy batch
plus a forget set of 16, batch norm frozen) and evaluation (forward of 1,024 images under inference mode).
Variants: eager (what l2ul runs), eager channels-last, and ``torch.compile`` (default mode), each after
warm-up; the compile time is reported apart. It also checks that the compiled outputs equal the eager ones
bit for bit, since l2ul promises bit-identical results for a seed.

    OMP_NUM_THREADS=1 python benchmarks/compile_probe.py --shared ../shared
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def _time(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from l2ul.loading import load_model_from

    model = load_model_from(arch="resnet20", weights=Path(args.shared) / "datasets" / "pretrained" /
                            "cifar10_resnet20-12fca82f.th").eval()
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.rand(144, 3, 32, 32, generator=g), torch.randint(0, 10, (144,), generator=g)
    xe = torch.rand(1024, 3, 32, 32, generator=g)

    def step(m, x):
        m.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), yb).backward()

    def evaluate(m, x):
        with torch.inference_mode():
            return m(x)

    rows = []
    eager_out = evaluate(model, xe)
    rows.append(("eager", _time(lambda: step(model, xb), args.reps), _time(lambda: evaluate(model, xe), args.reps),
                 0.0, True))
    cl = model.to(memory_format=torch.channels_last)
    xb_cl, xe_cl = xb.to(memory_format=torch.channels_last), xe.to(memory_format=torch.channels_last)
    same = torch.equal(evaluate(cl, xe_cl), eager_out)
    rows.append(("channels-last", _time(lambda: step(cl, xb_cl), args.reps),
                 _time(lambda: evaluate(cl, xe_cl), args.reps), 0.0, same))
    model = model.to(memory_format=torch.contiguous_format)
    try:
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        step(compiled, xb)
        out = evaluate(compiled, xe)
        t_compile = time.perf_counter() - t0
        rows.append(("torch.compile", _time(lambda: step(compiled, xb), args.reps),
                     _time(lambda: evaluate(compiled, xe), args.reps), t_compile, torch.equal(out, eager_out)))
    except Exception as e:  # no C++ compiler, or an unsupported op: the probe says so
        rows.append((f"torch.compile failed: {type(e).__name__}: {str(e)[:80]}", float("nan"), float("nan"),
                     float("nan"), False))
    base_step, base_eval = rows[0][1], rows[0][2]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| variant | repair step s (144 images) | vs eager | evaluation s (1,024 images) | vs eager | "
          "compile s | outputs bit-identical to eager |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, ts, te, tc, same in rows:
        print(f"| {name} | {ts:.3f} | {base_step / ts:.2f}x | {te:.3f} | {base_eval / te:.2f}x | {tc:.1f} | "
              f"{'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
