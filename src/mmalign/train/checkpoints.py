"""A training run's output folder: its checkpoints, the resume policy, and the final save, for every trainer.

``train.output_dir`` holds ``checkpoint-<step>/`` every ``train.save_steps`` (model, processor, optimiser,
scheduler, RNG states; ``trainer_state.json`` is written last, so a folder holding it is complete),
``metrics.jsonl``, the run's config (``<kind>_config.yaml``) and ``train_result.json``; the final model is saved in
``output_dir`` itself (safetensors + processor), with LoRA the adapter in ``output_dir/adapter``.

* :func:`resume_point`: with ``train.resume=true`` the latest complete checkpoint (a warning names the options
  changed since); without it, a folder that already holds a run is refused, so two runs never mix.
* :func:`train_resuming`: ``trainer.train()`` from that checkpoint. ``Trainer`` loads the pickled files
  (optimiser, scheduler, RNG states) with ``torch.load(weights_only=True)``, which refuses a pickle holding
  anything but tensors, so a tampered ``optimizer.pt`` never runs its code; its error advises
  ``weights_only=False``, the one thing not to do with a file of unknown origin, so such a checkpoint is reported
  as untrusted instead, and a truncated or damaged one as damaged, naming the file.
* :func:`restore_weights`: a checkpoint's weights back into the model, keys converted as ``from_pretrained`` does.
* :func:`save_final`: the trained model, gathered from its shards under FSDP / DeepSpeed.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mmalign.config import config_to_dict
from mmalign.errors import ConfigError, UntrustedFileError
from mmalign.files import atomic_path
from mmalign.models.processors import save_upstream_processor

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RESULT_FILE = "train_result.json"
DAMAGED = ("PytorchStreamReader", "failed finding central directory", "unexpected EOF")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-step complete checkpoint (``trainer_state.json`` is written last) in ``output_dir``."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    complete = [(step, p) for step, p in found if (p / "trainer_state.json").is_file()]
    return max(complete)[1] if complete else None


def checkpoint_step(path: Path | None) -> int:
    """The step a checkpoint folder was saved at (0 for None: a run from scratch)."""
    match = None if path is None else CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else 0


def resume_point(config: Any, config_file: str, say: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from; refuses to mix a new run into a directory holding another."""
    from mmalign.train.callbacks import METRICS_FILE

    out = Path(config.train.output_dir)
    checkpoint = latest_checkpoint(out)
    if config.train.resume:
        if checkpoint is None:
            say(f"no checkpoint in {out}: starting from scratch")
            return None
        saved = out / config_file
        if saved.is_file():
            before = _flat(yaml.safe_load(saved.read_text(encoding="utf-8")) or {})
            now = _flat(config_to_dict(config))
            keys = (before.keys() | now.keys()) - {"train.resume"}
            changed = sorted(k for k in keys if before.get(k) != now.get(k))
            if changed:
                say(f"warning: resuming with options changed since the checkpoint: {', '.join(changed)}")
        return checkpoint
    if out.is_dir():
        marks = (METRICS_FILE, RESULT_FILE, "config.json")
        taken = [p.name for p in out.iterdir() if CHECKPOINT.match(p.name) or p.name in marks]
        if taken:
            raise ConfigError(
                f"{out} already holds a run ({', '.join(sorted(taken)[:3])}); continue it with train.resume=true, "
                "or choose another train.output_dir (or delete this one)"
            )
    return None


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader sees the old file or the new one, never a part)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------------ resuming


def train_resuming(trainer: Any, checkpoint: Path | None) -> Any:
    """``trainer.train()``, from ``checkpoint`` when given, with its unloadable files reported in one line."""
    if checkpoint is None:
        return trainer.train()
    try:
        with warnings.catch_warnings():  # a tampered pickle's protocol draws a warning before the refusal
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return trainer.train(resume_from_checkpoint=str(checkpoint))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        name = _file_refused(err, Path(checkpoint))
        if name is None:
            raise
        what = f"its {name}" if name else "one of its files"
        fix = "delete the checkpoint, or start without train.resume"
        if isinstance(err, pickle.UnpicklingError) and not _damaged(err):
            raise UntrustedFileError(
                f"checkpoint {checkpoint} is untrusted: {what} holds more than tensors, so torch's safe loading "
                f"refused it (not loaded); {fix}"
            ) from None
        raise ConfigError(
            f"checkpoint {checkpoint} is damaged: {what} cannot be read ({_first_line(err)}); {fix}"
        ) from None


def _file_refused(err: BaseException, checkpoint: Path) -> str | None:
    """The name of the checkpoint file ``torch.load`` failed on ('' when the failure is torch.load's but the file
    is unknown); None when the error did not come from loading a file of this checkpoint."""
    frames = [frame for frame, _ in traceback.walk_tb(err.__traceback__)]
    loads = [f for f in frames if f.f_code.co_name == "load" and f.f_code.co_filename.endswith("serialization.py")]
    if not loads:
        return None
    source = loads[-1].f_locals.get("f")
    if not isinstance(source, (str, Path)):
        return ""
    path = Path(source)
    try:
        inside = path.resolve().parent == checkpoint.resolve()
    except OSError:
        inside = False
    return path.name if inside else None


def _damaged(err: BaseException) -> bool:
    return any(mark in str(err) for mark in DAMAGED)


def _first_line(err: BaseException) -> str:
    """The error's first sentence (torch's go on about how the file may have been damaged)."""
    text = str(err).strip().splitlines()
    return text[0].split(". ")[0] if text else type(err).__name__


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def restore_weights(model: Any, checkpoint: str | Path) -> None:
    """Load a checkpoint's weights into ``model`` in place, through ``from_pretrained``.

    ``Trainer``'s own resume reads ``model.safetensors`` with ``load_state_dict(strict=False)``, which skips the
    key conversion ``from_pretrained`` applies: in transformers 5 a LLaVA checkpoint's keys
    (``language_model.model.layers...``) differ from its module names (``model.language_model.layers...``), so
    every weight was silently left as it was. Here all keys must match (``strict``)."""
    dtype = next(model.parameters()).dtype
    fresh = type(model).from_pretrained(checkpoint, dtype=dtype, use_safetensors=True)
    model.load_state_dict(fresh.state_dict(), strict=True)
    del fresh


# ------------------------------------------------------------------------------------------ the final model


def save_model_dir(model: Any, processor: Any, out: str | Path) -> Path:
    """Save ``model`` (safetensors) and ``processor`` into ``out``, which may already hold other files
    (checkpoints, logs). Files are written beside it first and moved in with ``config.json`` last, so a
    directory with a ``config.json`` always has its complete weights."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".save.", dir=out))
    try:
        model.save_pretrained(staging)
        save_upstream_processor(processor, staging)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == "config.json")
        for name in names:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def save_final(
    trainer: Any, processor: Any, out: Path, lora: bool, merge: bool = True
) -> tuple[Path | None, Path | None]:
    """Save the trained model; returns (model_dir, adapter_dir). Without LoRA the model goes to ``out``; with
    LoRA the adapter to ``out/adapter`` and, when ``merge``, the merged model to ``out``. Under FSDP / DeepSpeed,
    ``Trainer.save_model`` gathers the shards (with LoRA: the adapter, in ``out``). Other processes return
    (None, None)."""
    trainer.accelerator.wait_for_everyone()
    sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    if not (sharded or trainer.args.should_save):
        return None, None
    if sharded:  # sharded weights: Trainer gathers them
        trainer.save_model(str(out))
        return (None, out) if lora else (out, None)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    if not lora:
        return save_model_dir(model, processor, out), None
    adapter = out / "adapter"
    with atomic_path(adapter) as tmp:
        model.save_pretrained(tmp)
        save_upstream_processor(processor, tmp)
    if not merge:
        return None, adapter
    return save_model_dir(model.merge_and_unload(), processor, out), adapter
