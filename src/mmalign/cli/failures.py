"""One line for each error a person can act on (:func:`explain`), printed by :func:`mmalign.cli.main.main`
instead of a traceback. Exit codes are listed in :mod:`mmalign.errors`."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

from mmalign.errors import EXIT_BAD_INPUT, EXIT_SYSTEM, MMAlignError
from mmalign.files import write_failure

UNSAFE_PICKLE = "Weights only load failed"  # torch.load(weights_only=True) refusing a pickle


def explain(err: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for an anticipated error; None for anything else (a bug: its traceback is shown)."""
    if isinstance(err, MMAlignError):
        return one_line(str(err)), err.exit_code
    if UNSAFE_PICKLE in str(err):
        return (
            "a file torch was asked to load holds more than tensors, so it is untrusted and was not loaded "
            "(torch's safe loading refused it); use files you made or trust",
            EXIT_BAD_INPUT,
        )
    if isinstance(err, pickle.UnpicklingError):
        return one_line(f"a pickled file is damaged ({err!r})"), EXIT_BAD_INPUT
    os_error = err if isinstance(err, OSError) else None
    if os_error is None and (type(err).__name__ == "SafetensorError" or isinstance(err, RuntimeError)):
        os_error = write_failure(err, None)
    if os_error is not None:
        return one_line(os_error_message(os_error)), EXIT_SYSTEM
    if type(err).__name__ == "SafetensorError":
        return one_line(f"a safetensors file is damaged or not safetensors ({err})"), EXIT_BAD_INPUT
    return None


def one_line(text: str) -> str:
    return " ".join(text.split())


def os_error_message(err: OSError) -> str:
    """What went wrong, where, and what to do, for an error the operating system raised."""
    where = str(err.filename) if err.filename is not None else None
    at = where or "a file"
    if where is not None and err.filename2 is not None:
        at = f"{where} -> {err.filename2}"
    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        kind = "disk quota exceeded" if code == errno.EDQUOT else "no space left on the device"
        return f"{kind} writing {at}: free some space, or choose an output on another disk, then rerun"
    if code == errno.EFBIG:
        return f"{at}: file too large for this file system: choose an output on another file system"
    if code == errno.EROFS:
        return f"{at} is on a read-only file system: choose a writable output folder"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {at}: give this user access to it, or choose another path"
    if code == errno.ENOTDIR:
        blocking = _file_in_path(where) if where else None
        if blocking is None or blocking == Path(where or ""):
            return f"{at} is a file where a folder is expected: rename or remove it, or choose another path"
        return f"{at}: {blocking} is a file where a folder is expected: rename or remove it, or choose another path"
    if code == errno.EISDIR:
        return f"{at} is a folder where a file is expected: give the path of a file"
    if code == errno.ENOENT:
        return f"{at} does not exist: check the path"
    if code == errno.EEXIST:
        return f"{at} already exists: remove it, or choose another path"
    if code == errno.ENAMETOOLONG:
        return f"{at}: name too long for the file system: choose a shorter path"
    if code in (errno.EMFILE, errno.ENFILE):
        return f"too many open files (at {at}): raise the limit (ulimit -n), then rerun"
    if code == errno.EIO:
        return f"input/output error at {at}: the disk or network file system failed; check it, then rerun"
    if code == errno.ELOOP:
        return f"{at}: too many levels of symbolic links (a link loop?): check the path"
    reason = err.strerror or str(err) or type(err).__name__
    if "Original Traceback" in reason:  # re-raised from a DataLoader worker: its last line is the error
        reason = reason.strip().splitlines()[-1]
    return f"{where}: {reason}" if where else reason


def _file_in_path(path: str) -> Path | None:
    """The first part of ``path`` that is a file (where a folder is expected)."""
    for parent in reversed(Path(path).parents):
        if parent.is_file():
            return parent
    return Path(path) if Path(path).is_file() else None
