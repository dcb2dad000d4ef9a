"""How a model's test predictions spread over the classes, against the original ResNet-20's.

Used in BENCHMARKS.md, section 4b, to look at the model a continual run left in its checkpoint:

    python benchmarks/prediction_histogram.py --shared ../shared \
        --checkpoint benchmarks/results/resnet20_continual_nearest_freeze/checkpoints/l2ul.safetensors

Prints, for the original model and each checkpoint, the test accuracy and the share of test images
predicted as each class (every ``--stride``-th test image; default all).
"""
import argparse
import copy
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

import l2ul
from l2ul.evaluation import predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared", help="the shared folder (datasets/ inside)")
    ap.add_argument("--checkpoint", action="append", default=[], help="a bench checkpoint (safetensors state)")
    ap.add_argument("--stride", type=int, default=1, help="use every N-th test image (default 1: all)")
    args = ap.parse_args()
    shared = Path(args.shared) / "datasets"
    original = l2ul.import_state_dict("resnet20", str(shared / "pretrained" / "cifar10_resnet20-12fca82f.th"))
    data = l2ul.load_dataset(f"cifar10-jpeg:{shared / 'cifar10_jpeg.npz'}")
    idx = range(0, data.n_test, args.stride)
    x = torch.stack([data.test[i][0] for i in idx])
    y = torch.tensor([int(data.test[i][1]) for i in idx])
    names = data.class_names
    models = [("original", original)]
    for path in args.checkpoint:
        m = copy.deepcopy(original)
        m.load_state_dict(load_file(path))
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        models.append((f"{Path(path).parent.parent.name} after request {meta.get('request', '?')}", m))
    print(f"{len(y)} test images; share predicted as each class (%)")
    print("| model | accuracy (%) | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for name, m in models:
        p = predict(m, (x, y)).preds
        hist = torch.bincount(p, minlength=len(names)).float() / len(y) * 100
        acc = (p == y).float().mean().item() * 100
        print(f"| {name} | {acc:.1f} | " + " | ".join(f"{v:.1f}" for v in hist.tolist()) + " |")


if __name__ == "__main__":
    main()
