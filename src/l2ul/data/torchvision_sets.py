"""torchvision datasets: ``cifar10``, ``cifar100``, ``fashion-mnist`` (alias ``fashionmnist``).

They live under ``data_dir`` (default ``$L2UL_DATA_DIR`` or ``~/.cache/l2ul/data``) and are downloaded only
with ``download=True`` (CLI ``--download``). The images are held in memory as an :class:`ArrayImageDataset`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from ._registry import LoadArgs, register_dataset
from .bundle import DatasetBundle, _array_bundle, default_data_dir


def _load_torchvision(args: LoadArgs) -> DatasetBundle:
    """The torchvision dataset ``args.name`` (both splits) from ``data_dir``, downloading if asked."""
    from torchvision import datasets

    name = args.name
    root = args.data_dir or default_data_dir()
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
           "fashion-mnist": datasets.FashionMNIST}[name]
    splits = {}
    for train in (True, False):
        try:
            splits[train] = cls(str(root), train=train, download=args.download)
        except RuntimeError as e:
            hint = ("the files may be corrupt; delete them and pass --download" if args.download else
                    "pass --download (needs internet) or --data-dir DIR")
            raise DataError(f"{name} not found under {root} ({e}); {hint}") from None
        except OSError as e:  # network errors during download
            raise DataError(f"could not download {name} into {root} ({e}); check the network, or place the "
                            f"files there and pass --data-dir DIR") from None
    tr, te = splits[True], splits[False]
    x_train = np.asarray(tr.data.numpy() if isinstance(tr.data, torch.Tensor) else tr.data)
    x_test = np.asarray(te.data.numpy() if isinstance(te.data, torch.Tensor) else te.data)
    y_train = np.asarray(tr.targets, dtype=np.int64)
    y_test = np.asarray(te.targets, dtype=np.int64)
    desc = (f"torchvision {name} from {root}: {len(y_train)} train / {len(y_test)} test, "
            f"{len(tr.classes)} classes")
    return _array_bundle(name, x_train, y_train, x_test, y_test, list(tr.classes), description=desc,
                         augment=args.augment)


# one loader, three registrations (it reads the dataset from args.name)
register_dataset("cifar10", help="torchvision CIFAR-10 under --data-dir (--download to fetch)")(_load_torchvision)
register_dataset("cifar100", help="torchvision CIFAR-100 under --data-dir (--download to fetch)")(_load_torchvision)
register_dataset("fashion-mnist", aliases=("fashionmnist",),
                 help="torchvision Fashion-MNIST under --data-dir (--download to fetch)")(_load_torchvision)
