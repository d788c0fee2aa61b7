"""Resuming from a checkpoint whose pickled files (optimizer, scheduler, RNG states) torch cannot or will not load.

``Trainer`` loads them with ``torch.load(weights_only=True)``, which refuses a pickle holding anything but
tensors and plain containers, so a tampered ``optimizer.pt`` never runs its code. Its error advises
``weights_only=False``, the one thing not to do with a file of unknown origin; :func:`train_resuming` reports
such a checkpoint as untrusted instead, and a truncated or damaged one as damaged, naming the file.
"""

from __future__ import annotations

import pickle
import traceback
import warnings
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError, UntrustedFileError

DAMAGED = ("PytorchStreamReader", "failed finding central directory", "unexpected EOF")


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
