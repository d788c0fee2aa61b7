"""Image files that appear under a data root only when the whole write succeeds.

Writing a JSONL of records may write image files beside it (embedded images saved, source images copied).
If record 500 of 1000 turns out bad, the files of records 1 to 499 must not be left behind: they go to a
hidden staging folder inside the root (same file system, so moving them in is a rename) and are moved into
place only when the caller's block ends without error. A file already at a target is kept when identical and
is an error when different (another dataset may use it); on any failure the staging folder and whatever was
moved are removed, so the root is as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from mmalign.errors import DataError


@contextlib.contextmanager
def staged_files(root: str | Path) -> Iterator[Path]:
    """Yield a staging folder to write files into as if it were ``root``; on success they move into ``root``."""
    root = Path(root)
    stage = root / f".mmalign-stage-{secrets.token_hex(6)}"
    made_root = not root.exists()
    moved: list[Path] = []
    try:
        yield stage
        files = sorted(p for p in stage.rglob("*") if p.is_file()) if stage.exists() else []
        new = [(file, _target(root, stage, file)) for file in files]
        new = [(file, target) for file, target in new if not target.exists()]  # identical ones are kept
        for file, target in new:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        remove_empty_dirs({t.parent for t in moved}, root)
        if made_root:
            remove_empty_dirs({root}, root.parent)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _target(root: Path, stage: Path, file: Path) -> Path:
    """Where a staged file goes; an error if a different file is there or the path leaves ``root``."""
    target = root / file.relative_to(stage)
    root_real = root.resolve()
    if not target.parent.resolve().is_relative_to(root_real) or (
        target.is_symlink() and not target.resolve().is_relative_to(root_real)
    ):
        raise DataError(f"image path {str(target)!r} escapes the output root through a symlink")
    if target.exists() and not (target.is_file() and _same(target, file)):
        raise DataError(f"refusing to overwrite {str(target)!r}: a different file is already there")
    return target


def _same(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def remove_empty_dirs(dirs: set[Path], root: Path) -> None:
    """Remove folders made for moved files, now empty, up to (not including) ``root``."""
    for folder in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
