"""Files every stage shares: atomic writes, and the lock that keeps two runs out of one output.

A file or folder written through :func:`atomic_path` appears under its name only when complete: data goes to a
hidden temporary name beside the target and is renamed into place, so an interrupted write never leaves a half
file under the target name.

Every command that writes an output holds an :class:`OutputLock` on it for the whole run, so a second run into
the same output stops at once with a message naming the first (pid, host, command, start time) instead of
both writing, each clearing or adopting the other's files.

The lock is ``fcntl.flock`` on a small file, held on an open descriptor for the run's life: the kernel releases
it when the process ends however it ends (even SIGKILL), so a lock file left by a dead run is free to take, and
that is how a stale lock is told from a live one. The file holds who took it (JSON), for the message. It lives

- inside a folder that runs update in place (``train.output_dir``, ``eval run --out``, ``demo --out``):
  ``DIR/.mmalign.lock``, hidden, so listings and fingerprints of the folder skip it;
- beside a file, or a folder replaced whole when complete (``data build OUT``, ``world --out``):
  ``PARENT/.NAME.mmalign.lock``, since anything inside such a folder is swept away with it.

Under a distributed launch (``torchrun``, ``accelerate launch``) only the process of rank 0 takes the lock; the
others write nothing of their own.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from mmalign.errors import OutputInUseError

try:
    import fcntl
except ImportError:  # not a POSIX system: runs go unlocked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".mmalign.lock"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without flock (some FUSE mounts)
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # failures of writing, not of a path


@dataclass(frozen=True)
class LockHolder:
    """Who took a lock, as its file says."""

    pid: int | None
    host: str
    command: str
    started: str

    def describe(self) -> str:
        return f"mmalign pid {self.pid} on {self.host} since {self.started} (command {self.command})"


class OutputLock:
    """An exclusive lock on an output for the life of a ``with`` block; see the module docstring.

    ``OutputLock(folder)`` locks ``folder/.mmalign.lock``; ``OutputLock.beside(path)`` locks
    ``PARENT/.NAME.mmalign.lock``, for a file or a folder replaced whole. The folder holding the lock file is
    created, and removed again on exit if this lock made it and it is empty. A held lock raises
    :class:`OutputInUseError`; a stale one is taken over, with a note on stderr (``took_over`` says whose it was).

    Write failures without a path that escape the block (a full disk while writing a file, as OSError or as
    safetensors' or torch's own error) are raised again as an OSError naming the output.
    """

    def __init__(self, folder: str | Path, command: str = "mmalign", *, lock_file: Path | None = None) -> None:
        self.output = Path(folder)
        self.lock_file = lock_file if lock_file is not None else self.output / LOCK_NAME
        self.command = command
        self.took_over: LockHolder | None = None
        self._fd: int | None = None
        self._folder = self.lock_file.parent
        self._made = False  # whether this lock created the folder (removed on exit if left empty)

    @classmethod
    def beside(cls, target: str | Path, command: str = "mmalign") -> OutputLock:
        """The lock of a file, or of a folder written elsewhere and renamed into place when complete."""
        target = Path(target)
        resolved = target.resolve()
        return cls(target, command, lock_file=resolved.parent / f".{resolved.name}{LOCK_NAME}")

    def __enter__(self) -> OutputLock:
        if fcntl is None or os.environ.get("RANK", "0") != "0":
            return self
        while True:
            self._made = self._made or not self._folder.is_dir()
            try:
                self._folder.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # a file where the folder should be
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self._folder)) from None
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                if self._folder.is_dir():
                    raise
                continue  # the folder was just removed by a run that made it and left it empty
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputInUseError(self._in_use(holder)) from None
            except OSError as err:
                os.close(fd)
                if err.errno in NO_LOCKS:
                    print(
                        f"warning: cannot lock {self.lock_file} ({err.strerror}): a second run into "
                        f"{self.output} would not be stopped",
                        file=sys.stderr,
                    )
                    return self
                raise
            if _is_current(fd, self.lock_file):
                break
            os.close(fd)  # its last holder removed it between our open and flock: lock the new file
        self._fd = fd
        self.took_over = _read_holder(fd)
        if self.took_over is not None:
            print(
                f"note: {self.output} was locked by {self.took_over.describe()}, which is gone; taking the lock over",
                file=sys.stderr,
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                if _is_current(fd, self.lock_file):
                    self.lock_file.unlink()  # removed while still held: no one can take a file on its way out
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if self._made:
                with contextlib.suppress(OSError):
                    self._folder.rmdir()  # only if empty: a run that failed at once leaves no folder behind
        if exc is not None:
            located = write_failure(exc, self.output)
            if located is not None and located is not exc:
                raise located from exc

    def _in_use(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder is not None else "another mmalign run"
        return f"{self.output} is in use by {who}; wait for it, or remove {self.lock_file} if that run is gone"


# ------------------------------------------------------------------------------------------ atomic writes


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``, on error removed.

    Works for files and for directories (the caller creates what it wants at the yielded path). The temporary
    name is unique (random suffix) and hidden; nothing is created until the caller writes, so a single file
    costs one rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    tmp = target.parent / f".{target.name}.{token}.tmp"
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.parent / f".{target.name}.{token}.old"
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_failure(err: BaseException, output: Path | None) -> OSError | None:
    """``err`` as an OSError naming ``output`` (the output being written, if known) when it is a failure to write
    without a path of its own: a full disk while writing a file, or safetensors' or torch's own error for it
    (their temporary files are no name to give a person). ``err`` itself when it is an OSError naming its path;
    None when it is no failure of the operating system."""
    where = str(output) if output is not None else None
    if isinstance(err, OSError):
        if err.filename is None and err.errno in WRITE_ERRNOS and where is not None:
            return OSError(err.errno, err.strerror, where)
        return err
    if type(err).__name__ == "SafetensorError":  # "... I/O error: No space left on device (os error 28) at path "
        found = re.search(r"\(os error (\d+)\)(?: at path \"(.*)\")?", str(err))
        if found:
            code, path = int(found.group(1)), found.group(2)
            return OSError(code, os.strerror(code), where or (str(Path(path).parent) if path else None))
    if isinstance(err, RuntimeError) and "inline_container" in str(err) and _torch_write_failed(str(err)):
        return OSError(errno.ENOSPC, "torch could not write a whole file (disk full?)", where)
    return None


def _torch_write_failed(message: str) -> bool:
    """torch.save's error when the disk fills: 'unexpected pos' or 'PytorchStreamWriter failed writing file'."""
    return "unexpected pos" in message or "failed writing" in message or "file write failed" in message


def _read_holder(fd: int) -> LockHolder | None:
    try:
        data: Any = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return LockHolder(
        pid if isinstance(pid, int) else None,
        str(data.get("host", "?")),
        str(data.get("command", "?")),
        str(data.get("started", "?")),
    )


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open on ``fd``."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
