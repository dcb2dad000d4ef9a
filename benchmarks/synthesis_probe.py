"""How good are the data-free proxy images, by synthesis setting? (issue #11, the ResNet-32 data-free miss)

The data-free repair distils the original model on images inverted from its batch-norm statistics
(``l2ul.synthesis.invert_bn_statistics``). With the defaults (200 Adam steps per batch at a constant
``lr`` 0.1) only 33% of the ResNet-32's images land in their class (the ResNet-20's: 54%), and the
ResNet-32's data-free repair loses 5.0 points of D_r at k = 16 against the ResNet-20's 2.3
(BENCHMARKS.md 5d). This probe synthesises one batch of 256 images (class-balanced, the first batch
``cached_synthesis`` would make, seed 0) per setting and prints, per setting: the share the model predicts
as their target class, the batch-norm statistics loss of the final images (the term the inversion
minimises, summed over BN layers), and the wall time. No D_r or test image is read.

    OMP_NUM_THREADS=1 python benchmarks/synthesis_probe.py --shared ../shared --arch resnet32 \
        --settings "200:constant,200:cosine,400:cosine"
"""
import argparse
import time

import torch

from l2ul.loading import load_model_from
from l2ul.synthesis import _in_class, bn_statistics_loss, invert_bn_statistics

WEIGHTS = {"resnet20": "cifar10_resnet20-12fca82f.th", "resnet32": "cifar10_resnet32-d509ac18.th"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--arch", default="resnet32", choices=sorted(WEIGHTS))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--settings", default="200:constant,200:cosine",
                    help="comma-separated STEPS:SCHEDULE (schedule: constant or cosine)")
    args = ap.parse_args()
    net = load_model_from(arch=args.arch, weights=f"{args.shared}/datasets/pretrained/{WEIGHTS[args.arch]}")
    net.eval()
    targets = torch.arange(args.n) % 10
    print(f"{args.arch}, {args.n} images (one batch, seed 0), lr 0.1, the other settings l2ul's defaults")
    print("| steps | lr schedule | in class | BN statistics loss | s |")
    print("|---:|---|---:|---:|---:|", flush=True)
    for item in args.settings.split(","):
        steps, sched = item.split(":")
        t0 = time.perf_counter()
        x = invert_bn_statistics(net, args.n, image_shape=(3, 32, 32), num_classes=10, steps=int(steps),
                                 lr_schedule=sched, batch_size=256, seed=0)
        sec = time.perf_counter() - t0
        print(f"| {steps} | {sched} | {100 * _in_class(net, x, targets):.1f}% | {bn_statistics_loss(net, x):.3f} "
              f"| {sec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
