"""Adversarial-example generation: l2ul's TargetedL2PGD against advertorch's L2PGDAttack as the original
L2UL code calls it, on the real CIFAR-10 ResNet-20, in one run.

    python benchmarks/pgd_speed.py --shared ../shared [--k 16] [--per-instance 20] [--steps 100]

What it compares:
  original: advertorch.attacks.L2PGDAttack(eps, eps_iter, nb_iter, rand_init=True, targeted=True), called
            like utils.adv_attack: one call per repetition over the k forget instances (batch = k), model
            parameters left with requires_grad=True.
  l2ul:     l2ul.attacks.generate_adversarial_set: all k * per_instance examples in batches of 512, model
            parameters frozen (only the input gradient is computed).
  l2ul-small-batches: l2ul's attack in advertorch's batching, to separate the two effects.
It also checks that, from the same start and without random init, both attacks produce the same images
(max abs difference), and prints the L2 norms and target hit rates.

advertorch 0.2.3 (pip install --no-deps advertorch==0.2.3) no longer imports on current PyTorch: it needs
torch.autograd.gradcheck.zero_gradients, removed in PyTorch 1.9. This script adds that one function back
before importing it (benchmark only; l2ul itself never uses advertorch).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def _import_advertorch():
    import importlib

    gc = importlib.import_module("torch.autograd.gradcheck")   # the module (torch.autograd.gradcheck is a function)
    if not hasattr(gc, "zero_gradients"):
        def zero_gradients(x):
            if isinstance(x, torch.Tensor) and x.grad is not None:
                x.grad.detach_()
                x.grad.zero_()
        gc.zero_gradients = zero_gradients
    from advertorch.attacks import L2PGDAttack

    return L2PGDAttack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--per-instance", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eps", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1)
    args = ap.parse_args()

    import l2ul
    from l2ul.attacks import TargetedL2PGD, generate_adversarial_set, random_other_labels
    from l2ul.requests import random_forget_ids

    shared = Path(args.shared)
    model = l2ul.import_state_dict("resnet20", shared / "datasets/pretrained/cifar10_resnet20-12fca82f.th")
    data = l2ul.load_dataset(f"cifar10-jpeg:{shared / 'datasets/cifar10_jpeg.npz'}")
    ids = random_forget_ids(args.k, n_train=data.n_train, seed=0)
    x, y = data.stack_train(ids)
    n = args.k * args.per_instance
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; k={args.k}, {args.per_instance} per instance = {n} examples, "
          f"{args.steps} PGD iterations, eps {args.eps}, alpha {args.alpha}")

    # warm-up (oneDNN builds its kernels on first use), not timed
    TargetedL2PGD(model, eps=args.eps, alpha=args.alpha, steps=2)(x, random_other_labels(y, 10))
    rows = []
    # l2ul, as the engine runs it
    t0 = time.perf_counter()
    adv = generate_adversarial_set(model, x, y, 10, per_instance=args.per_instance, eps=args.eps, alpha=args.alpha,
                                   steps=args.steps, batch_size=512, generator=torch.Generator().manual_seed(0))
    t_l2ul = time.perf_counter() - t0
    norms = (adv.images - x[adv.source]).flatten(1).norm(dim=1)
    rows.append(("l2ul (batch 512, frozen params)", t_l2ul, adv.success_rate(model), float(norms.max())))

    # l2ul's attack in the original's batching (one call per repetition, batch = k)
    g = torch.Generator().manual_seed(0)
    attack = TargetedL2PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, batch_size=args.k)
    t0 = time.perf_counter()
    outs, tgts = [], []
    for _ in range(args.per_instance):
        t = random_other_labels(y, 10, g)
        outs.append(attack(x, t, generator=g))
        tgts.append(t)
    t_small = time.perf_counter() - t0
    xs, ts = torch.cat(outs), torch.cat(tgts)
    with torch.no_grad():
        hit = float((model.eval()(xs).argmax(1) == ts).float().mean())
    rows.append((f"l2ul (batch {args.k}, frozen params)", t_small, hit,
                 float((xs - x.repeat(args.per_instance, 1, 1, 1)).flatten(1).norm(dim=1).max())))

    try:
        L2PGDAttack = _import_advertorch()
    except ImportError as e:
        print(f"advertorch unavailable ({e}); pip install --no-deps advertorch==0.2.3 to compare")
        L2PGDAttack = None
    if L2PGDAttack is not None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
        adversary = L2PGDAttack(model, eps=args.eps, eps_iter=args.alpha, nb_iter=args.steps, rand_init=True,
                                targeted=True)
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        outs, tgts = [], []
        for _ in range(args.per_instance):
            t = random_other_labels(y, 10, g)
            outs.append(adversary.perturb(x, t))
            tgts.append(t)
        t_orig = time.perf_counter() - t0
        xs, ts = torch.cat(outs), torch.cat(tgts)
        with torch.no_grad():
            hit = float((model(xs).argmax(1) == ts).float().mean())
        rows.insert(0, (f"original: advertorch L2PGDAttack (batch {args.k}, params with grad)", t_orig, hit,
                        float((xs - x.repeat(args.per_instance, 1, 1, 1)).flatten(1).norm(dim=1).max())))

        # same start, no random init: the two attacks must agree
        t = random_other_labels(y, 10, torch.Generator().manual_seed(5))
        ref = L2PGDAttack(model, eps=args.eps, eps_iter=args.alpha, nb_iter=20, rand_init=False,
                          targeted=True).perturb(x, t)
        ours = TargetedL2PGD(model, eps=args.eps, alpha=args.alpha, steps=20, random_start=False)(x, t)
        print(f"same start, 20 iterations, no random init: max |advertorch - l2ul| = {float((ref - ours).abs().max()):.2e}")

    base = rows[0][1]
    print()
    print("| attack | seconds | images x iterations / s | speed-up vs first row | target hit rate | max L2 norm |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, sec, hit, nmax in rows:
        print(f"| {name} | {sec:.1f} | {n * args.steps / sec:.0f} | {base / sec:.2f}x | {100 * hit:.1f}% | {nmax:.4f} |")


if __name__ == "__main__":
    main()
