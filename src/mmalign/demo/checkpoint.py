"""The shipped SFT baseline (``mmalign/assets/tiny-llava-sft``): where it is, checking it, making it again.

The package ships the demo's baseline so that ``mmalign demo`` needs no SFT run: the ``tiny-llava`` preset
fine-tuned with the project's own recipe (``configs/demo/sft.yaml``) on the demo world's training split, seed
fixed. The directory holds an ordinary model directory (safetensors weights, config, tokenizer and processor
files; no pickle) and ``baseline.json``: the recipe as run, the world it was trained on, the training result,
the SHA-256 of every file, and the command that regenerates it::

    mmalign demo --from-scratch --export-baseline src/mmalign/assets/tiny-llava-sft

:func:`verify` checks every file against the manifest before the demo uses the checkpoint, so a damaged or
half-copied asset fails at start with the file named.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from mmalign.data.io import read_json
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path

SHIPPED_NAME = "tiny-llava-sft"
MANIFEST = "baseline.json"
FORMAT = "mmalign.demo.baseline/1"
REGENERATE = "mmalign demo --from-scratch --export-baseline src/mmalign/assets/tiny-llava-sft"
"""The command that makes the shipped checkpoint again (from a checkout, whose configs/demo holds the recipe)."""
MODEL_SUFFIXES = (".json", ".safetensors", ".jinja", ".txt", ".model")
"""Files of a model directory (weights, config, tokenizer, processor); training logs and pickles are not."""
NOT_MODEL = ("train_result.json", "trainer_state.json")
WORLD_SIZES = ("train_scenes", "val_scenes", "test_scenes")
"""World options that may differ from the baseline's world: split sizes (splits are stable under resizing)."""


def shipped_dir() -> Path:
    """Where the shipped baseline is inside the installed package."""
    return Path(str(resources.files("mmalign") / "assets" / SHIPPED_NAME))


def model_files(model_dir: Path) -> list[Path]:
    """The files that make up the model in ``model_dir`` (top level; checkpoints and logs left out), sorted."""
    return sorted(
        p
        for p in Path(model_dir).iterdir()
        if p.is_file() and p.suffix in MODEL_SUFFIXES and p.name not in NOT_MODEL and p.name != MANIFEST
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def copy_model(model_dir: Path, dest: Path) -> Path:
    """Copy the model files of ``model_dir`` into a fresh ``dest`` (atomically); returns ``dest``."""
    files = model_files(model_dir)
    if not any(p.suffix == ".safetensors" for p in files):
        raise DataError("no safetensors weights in this model directory", file=model_dir)
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, tmp / path.name)
    return dest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"not a demo baseline: {MANIFEST} is missing (regenerate it: {REGENERATE})", file=path)
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"unknown baseline format (expected {FORMAT!r})", file=path, field="format")
    return manifest


def verify(directory: Path | None = None) -> dict[str, Any]:
    """Check every file the manifest lists (present, same SHA-256) and that no model file is unlisted; returns
    the manifest. Raises :class:`DataError` naming the first bad file."""
    directory = shipped_dir() if directory is None else Path(directory)
    manifest = read_manifest(directory)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise DataError("the manifest lists no files", file=directory / MANIFEST, field="files")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"missing (regenerate the baseline: {REGENERATE})", file=path)
        if sha256(path) != expected:
            raise DataError(f"SHA-256 differs from {MANIFEST}: the file was changed or damaged", file=path)
    extra = [p.name for p in model_files(directory) if p.name not in files]
    if extra:
        raise DataError(f"model files not in {MANIFEST}: {', '.join(extra)}", file=directory / MANIFEST, field="files")
    return manifest


def export(
    model_dir: Path, dest: Path, *, recipe: dict[str, Any], world: dict[str, Any], training: dict[str, Any]
) -> dict[str, Any]:
    """Write ``model_dir``'s model files and a manifest to ``dest`` (replacing it atomically); returns the manifest.

    ``recipe``: the SFT config as run; ``world``: the world's config; ``training``: the training result."""
    import torch
    import transformers

    files = model_files(model_dir)
    manifest = {
        "format": FORMAT,
        "description": "the tiny-llava preset fine-tuned by the demo's SFT recipe on the shapes world (mmalign demo)",
        "command": REGENERATE,
        "recipe": recipe,
        "world": world,
        "training": training,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "files": {p.name: sha256(p) for p in files},
    }
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, tmp / path.name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return manifest


def check_world(manifest: dict[str, Any], world: dict[str, Any]) -> None:
    """The demo's world must be the baseline's (split sizes aside): other partner pairs or objects would make
    the baseline's learned co-occurrences meaningless."""
    trained = manifest.get("world", {})
    changed = sorted(k for k in set(trained) | set(world) if k not in WORLD_SIZES and trained.get(k) != world.get(k))
    if changed:
        detail = ", ".join(f"{k} {trained.get(k)!r} → {world.get(k)!r}" for k in changed)
        raise ConfigError(
            f"the shipped baseline was trained on another world ({detail}); use --from-scratch to train a baseline "
            "for this one"
        )
