"""Options shared by the commands. The unlearning-config flags are generated from the
:class:`l2ul.UnlearnConfig` field metadata (help, choices, defaults), so every command that takes a config
(``unlearn``, ``bench``) has the same flags, and a new config field is a new flag everywhere."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Optional, Tuple


def seed_arg(text: str) -> int:
    """``--seed``: a whole number in the range every seeded generator accepts (0..2**63-1)."""
    from ..config import UnlearnConfig

    top = int(UnlearnConfig.__dataclass_fields__["seed"].metadata["maximum"])
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give a seed in 0..{top}") from None
    if not 0 <= v <= top:
        raise argparse.ArgumentTypeError(f"{v} is outside 0..{top}; give a seed in that range")
    return v


def count_arg(text: str) -> int:
    """A whole number >= 0 (``--retain-eval-size``: 0 = all)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; give a number >= 0 (0 = all)")
    return v


def method_arg(text: str) -> str:
    """``--method``: a registered method (checked when the flag is parsed, so that building the parser and
    ``--help`` import no method, hence no torch)."""
    from ..methods import list_methods

    names = list_methods()
    if text not in names:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(map(repr, names))})")
    return text


def flag_of(field_name: str) -> str:
    """``pgd_eps`` -> ``--pgd-eps``."""
    return "--" + field_name.replace("_", "-")


def add_config_arguments(p: argparse.ArgumentParser, *, exclude: Iterable[str] = ()) -> None:
    """``--preset`` and one flag per exposed config field, grouped as the config documents them."""
    from ..config import PRESETS, config_fields

    exclude = set(exclude)
    groups = {}
    head = p.add_argument_group("unlearning hyperparameters (default: the paper's CIFAR-10 recipe)")
    head.add_argument("--preset", choices=sorted(PRESETS), help="the paper's hyperparameters for a setting, or "
                      "'fast' (method repair: the closed-form head edit, no repair steps)")
    head.add_argument("--config", metavar="FILE",
                      help="a TOML file (or YAML, with pyyaml installed) of hyperparameters: keys are the names of "
                           "the flags below with _ for - (pgd_eps = 0.5); it overrides --preset, and the flags "
                           "given override it")
    for f in config_fields():
        m = f.metadata
        if not m["flag"] or f.name in exclude:
            continue
        g = groups.get(m["group"]) or groups.setdefault(m["group"], p.add_argument_group(f"config: {m['group']}"))
        default = "automatic" if f.default is None else f.default
        kw = {"dest": f.name, "default": None, "help": f"{m['help']} (default: {default})"}
        if m["choices"] is not None:
            kw["choices"] = list(m["choices"])
        else:
            kw["type"] = m["kind"] if m["kind"] in (int, float) else str
            kw["metavar"] = {int: "N", float: "X"}.get(m["kind"], "VALUE")
        g.add_argument(flag_of(f.name), **kw)


def config_from_args(args, *, seed: Optional[int] = None) -> Tuple["UnlearnConfig", str]:  # noqa: F821
    """The config the flags describe (preset, then the ``--config`` file, then explicit flags) and a short name
    for reports (``default``, ``<preset>``, ``... + <file name>``, ``... + overrides``)."""
    from ..config import UnlearnConfig, config_fields
    from ..errors import ConfigError
    from ._config_file import read_config_file

    overrides = {f.name: getattr(args, f.name) for f in config_fields()
                 if f.metadata["flag"] and getattr(args, f.name, None) is not None}
    preset, path = getattr(args, "preset", None), getattr(args, "config", None)
    from_file = read_config_file(path) if path else {}
    parts = [preset or "default"] + ([Path(path).name] if path else [])
    if any(k != "device" for k in overrides):
        parts.append("overrides")
    if seed is not None:
        overrides["seed"] = seed
    try:
        cfg = UnlearnConfig.from_preset(preset, **from_file) if preset else UnlearnConfig(**from_file)
    except ConfigError as e:  # a value of the file: no flag to name
        raise ConfigError(f"{path}: {e}") from None
    return cfg.replace(**overrides), " + ".join(parts)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (an l2ul model file, or a foreign state_dict with its architecture)")
    g.add_argument("--model", metavar="FILE", help="l2ul model file (.safetensors written by l2ul)")
    g.add_argument("--arch", metavar="NAME", help="architecture of --weights (see `l2ul info`)")
    g.add_argument("--weights", metavar="PATH", help="foreign checkpoint (.th/.pt/.pth/.safetensors) for --arch; "
                                                     "loaded without executing pickled code")
    g.add_argument("--num-classes", type=int, metavar="N",
                   help="class count for --arch (default: inferred from the checkpoint's final layer)")


#: example dataset specs named in the ``--dataset`` help (a test keeps them registered); the help names no full
#: list because the registry is filled by modules that import torch, and ``--help`` must not
DATASET_EXAMPLES = ("digits", "cifar10", "cifar100", "fashion-mnist", "npz:PATH", "imagefolder:PATH",
                    "imagenet:PATH", "utkface:PATH")


def add_data_args(p: argparse.ArgumentParser, default: Optional[str] = "digits", *,
                  required: Optional[bool] = None, title: str = "data") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--dataset", default=default, required=default is None if required is None else required,
                   metavar="SPEC",
                   help=f"dataset spec: {', '.join(DATASET_EXAMPLES)}, ... (`l2ul info` lists them all)"
                        + (" (default: %(default)s)" if default else ""))
    g.add_argument("--data-dir", metavar="DIR", help="where torchvision datasets live / are downloaded")
    g.add_argument("--download", action="store_true", help="download a torchvision dataset if missing (internet)")


def add_request_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("deletion request (training-split indices in canonical order, or file paths)")
    m = g.add_mutually_exclusive_group(required=required)
    m.add_argument("--forget-ids", metavar="IDS|@FILE",
                   help="comma list (3,17,42), or @FILE: a file with one id per line (only a value starting with "
                        "@ is read as a file)")
    m.add_argument("--forget-random", type=int, metavar="K", help="K random training instances (with --seed)")
    g.add_argument("--relabel-to", metavar="TARGETS|@FILE|random",
                   help="relabel task: a comma list of target classes aligned with the ids, @FILE (one target per "
                        "line), or 'random' (another class, seeded)")
    g.add_argument("--seed", type=seed_arg, default=0, help="seed for the request and the run (default 0)")


def model_inputs(args) -> list:
    """The input files a command reads its model from."""
    return [p for p in (getattr(args, "model", None), getattr(args, "weights", None)) if p]


def load_model_from_args(args):
    from ..loading import load_model_from

    return load_model_from(model=getattr(args, "model", None), arch=getattr(args, "arch", None),
                           weights=getattr(args, "weights", None), num_classes=getattr(args, "num_classes", None))
