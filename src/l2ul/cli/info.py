"""``l2ul info``: methods (with the data they need), models, presets and dataset specs."""
from __future__ import annotations


def add_arguments(p) -> None:
    pass


def cmd_info(args) -> int:
    from ..config import PRESETS
    from ..data import describe_specs
    from ..methods import get_method, list_methods
    from ..models import list_models, model_info

    print("methods:")
    names = list_methods()
    w = max(map(len, names))
    for name in names:
        m = get_method(name)
        print(f"  {name:{w}s} {m.description}\n  {'':{w}s} needs: {m.data_needs}" + (f"; source: {m.source}" if m.source else "")
              + f"\n  {'':{w}s} tasks: {', '.join(m.tasks)}")
    print("models (plus tv:<any torchvision classification model>, timm:<any timm model> with l2ul[timm]):")
    for name in list_models():
        print(f"  {name:16s} {model_info(name).get('description', '')}")
    print("presets:")
    for name, p in sorted(PRESETS.items()):
        print(f"  {name:18s} " + ", ".join(f"{k}={v}" for k, v in p["config"].items()))
    print("datasets:")
    print("  " + describe_specs().replace("\n", "\n  "))
    return 0
