"""``--config FILE``: unlearning hyperparameters from a TOML file (or YAML, when pyyaml is installed).

The keys are :class:`l2ul.UnlearnConfig` field names (``pgd_eps = 0.5``: the flag ``--pgd-eps`` without its
dashes); an unknown key is an error naming the valid ones. Precedence: ``--preset``, then the file, then the
flags given on the command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict


def _parse(path: Path, text: str) -> Any:
    from ..errors import ConfigError

    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading YAML needs pyyaml (pip install pyyaml); or write the file as "
                              "TOML") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(f"{path}: reading TOML on Python < 3.11 needs tomli (pip install tomli)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}; write one `field = value` per line") from None


def read_config_file(path) -> Dict[str, Any]:
    """The ``field -> value`` pairs of a config file, checked to be config fields (values are checked when
    the config is built)."""
    from ..config import config_fields
    from ..errors import ConfigError

    path = Path(path).expanduser()
    data = _parse(path, path.read_text(encoding="utf-8"))  # (a missing file: the CLI's one-line OSError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold `field = value` pairs, not a {type(data).__name__}")
    names = [f.name for f in config_fields()]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{path}: unknown config key(s) {', '.join(unknown)}; the keys are UnlearnConfig field "
                          f"names: {', '.join(names)}")
    if "seed" in data:
        raise ConfigError(f"{path}: the seed is not read from a config file; give it with --seed (unlearn) or "
                          "--seeds (bench)")
    return dict(data)
