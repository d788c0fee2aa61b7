"""Resolving a trainer's ``model.path``: a model directory or a tiny preset name.

An existing directory is used as it is. Otherwise a tiny preset name (``tiny-llava``, ``tiny-qwen2-vl``, ...)
is built once under the preset cache, ``$MMALIGN_HOME/presets`` (default ``~/.cache/mmalign/presets``), and
reused while its recorded spec matches (:func:`mmalign.models.tiny.ensure_preset`; the directory appears
atomically, so two runs building it at once both end with a complete copy).
"""

from __future__ import annotations

import os
from pathlib import Path

from mmalign.errors import ConfigError

HOME_ENV = "MMALIGN_HOME"
"""Environment variable naming mmalign's cache root."""


def mmalign_home() -> Path:
    """``$MMALIGN_HOME`` if set, else ``~/.cache/mmalign``."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mmalign"


def preset_root() -> Path:
    """The folder tiny presets are built in."""
    return mmalign_home() / "presets"


def resolve_model_path(path_or_preset: str, cache: str | Path | None = None) -> Path:
    """The model directory for ``path_or_preset``: an existing path, or a preset built under ``cache``
    (default :func:`preset_root`) on first use."""
    from mmalign.models.tiny import PRESETS, ensure_preset

    if not path_or_preset:
        raise ConfigError("model.path is empty: give a model directory or a preset name")
    path = Path(path_or_preset).expanduser()
    if path.exists():
        return path
    if path_or_preset in PRESETS:
        return ensure_preset(path_or_preset, preset_root() if cache is None else Path(cache))
    raise ConfigError(
        f"model.path {path_or_preset!r} is neither an existing directory nor a preset ({', '.join(PRESETS)})"
    )
