"""Datasets: ``load_dataset(spec) -> DatasetBundle``.

Every dataset returns ``(image, label)`` with ``image`` a ``FloatTensor[C, H, W]`` in ``[0, 1]`` and ``label``
an ``int``; normalisation lives inside the model (see ARCHITECTURE.md). A :class:`DatasetBundle` also carries
the labels as ``np.int64`` arrays, so deletion requests and evaluation never iterate images to read labels,
and a canonical identifier for each training instance (``train_ids``) that ``--forget-ids`` refers to.

Datasets are registered by name (``@register_dataset``, :mod:`l2ul.data._registry`), one module per family;
``describe_specs()`` lists every registered spec (CLI help, ``l2ul info``) and each module's docstring
details its own:

- :mod:`~l2ul.data.arrays`: ``digits``, ``npz:PATH``, ``cifar10-jpeg:PATH``
- :mod:`~l2ul.data.torchvision_sets`: ``cifar10``, ``cifar100``, ``fashion-mnist``
- :mod:`~l2ul.data.imagefolder`: ``imagefolder:PATH[?resize=R&crop=C]``, ``imagenet:PATH``
- :mod:`~l2ul.data.utkface`: ``utkface:PATH[?grouping=NAME]``

Adding a dataset: a new module holding ``@register_dataset("name", help=...)`` on a function
``loader(args: LoadArgs) -> DatasetBundle``, and an import line below.

``augment=True`` (for pre-training) adds random crop (padding ``H/8``, i.e. 4 for 32x32) + horizontal flip to
RGB array datasets (the paper's CIFAR recipe), ``RandomResizedCrop`` + flip to image folders, and random 120
crop + flip to UTKFace. Grey data (digits, Fashion-MNIST) is never augmented. Augmentation draws from torch's
global RNG (which a ``DataLoader`` seeds per worker from its own ``generator``). ``bundle.extra["train_eval"]``
is always the un-augmented training set (the same object as ``train`` when ``augment=False``).
"""
from ._registry import (
    DatasetEntry,
    LoadArgs,
    dataset_specs,
    describe_specs,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .bundle import (
    IMAGE_EXTENSIONS,
    ArrayImageDataset,
    DatasetBundle,
    FileImageDataset,
    default_cache_dir,
    default_data_dir,
    stack,
)

# The family modules register their datasets on import; this order is the order of describe_specs().
# isort: off
from . import arrays  # noqa: F401
from . import torchvision_sets  # noqa: F401
from . import imagefolder  # noqa: F401
from . import utkface  # noqa: F401
# isort: on
from .utkface import (
    UTKFACE_DEFAULT_GROUPING,
    UTKFACE_GROUPINGS,
    UTKFACE_PAPER_SPLIT,
    UTKFACE_SIZE,
    parse_utkface_name,
    utkface_age_class,
    utkface_split,
)

__all__ = [
    "DatasetBundle",
    "ArrayImageDataset",
    "FileImageDataset",
    "load_dataset",
    "stack",
    "describe_specs",
    "DATASET_SPECS",
    "UTKFACE_GROUPINGS",
    "UTKFACE_DEFAULT_GROUPING",
    "UTKFACE_PAPER_SPLIT",
    "UTKFACE_SIZE",
    "IMAGE_EXTENSIONS",
    "utkface_age_class",
    "utkface_split",
    "parse_utkface_name",
    "default_data_dir",
    "default_cache_dir",
    "register_dataset",
    "list_datasets",
    "dataset_specs",
    "DatasetEntry",
    "LoadArgs",
]


def __getattr__(name: str):
    # DATASET_SPECS, (spec, one-line description) per dataset, is computed from the registry on each access,
    # so it also lists datasets registered after import.
    if name == "DATASET_SPECS":
        return dataset_specs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
