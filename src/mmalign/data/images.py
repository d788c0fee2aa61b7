"""Opening, checking and writing image files safely.

Image paths in records are relative to a *data root*. Before a file is read, its path must stay inside the
root (absolute paths and ``..`` are refused by :func:`mmalign.data.parse.check_image_path`; symlinks are
resolved here and must point inside the root too), it must exist and be non-empty. Decoding
(:mod:`mmalign.data.decode`) refuses images over ``max_pixels`` from the header, before any pixel data is
decompressed.

Every failure is a :class:`DataError` with ``field`` set (``images[0]``); the reader adds file, line and id.
"""

from __future__ import annotations

import hashlib
import io
import traceback
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from mmalign.data.decode import decode_image
from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.parse import check_image_path
from mmalign.data.records import ImageBlob, ImageRef, Record
from mmalign.errors import ConfigError, DataError

CHECK_MODES = ("none", "exists", "decode")
"""How hard to check images: not at all, file present and non-empty, or fully decoded."""


def resolve_image(root: str | Path, path: str, field: str | None = None, what: str = "image") -> Path:
    """The real file behind ``path`` under ``root``: inside the root (after symlinks), present, non-empty (``what``:
    the file's kind in the messages, image or video)."""
    check_image_path(path, field or what, what)
    root_real = Path(root).resolve()
    candidate = root_real / path
    real = candidate.resolve()
    if not real.is_relative_to(root_real):
        raise DataError(f"{what} path {path!r} escapes the data root {str(root_real)!r} through a symlink", field=field)
    if not real.exists():
        raise DataError(f"{what} file not found: {str(candidate)!r}", field=field)
    if not real.is_file():
        raise DataError(f"{what} path {str(candidate)!r} is not a regular file", field=field)
    if real.stat().st_size == 0:
        raise DataError(f"{what} file {str(candidate)!r} is empty (0 bytes)", field=field)
    return real


def open_image(root: str | Path, path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str | None = None):
    """Resolve ``path`` under ``root`` safely and decode it to RGB."""
    real = resolve_image(root, path, field)
    return decode_image(real, max_pixels=max_pixels, field=field, name=f"image {str(Path(root) / path)!r}")


def load_image(
    ref: ImageRef, root: str | Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, field: str | None = None
) -> Image.Image:
    """An RGB PIL image from any image reference: a path under ``root``, a PIL image, or an :class:`ImageBlob`."""
    if isinstance(ref, Image.Image):
        check_pixels(ref, max_pixels, field)
        return ref if ref.mode == "RGB" else ref.convert("RGB")
    if isinstance(ref, ImageBlob):
        return decode_image(ref.data, max_pixels=max_pixels, field=field, name=_blob_name(ref))
    if isinstance(ref, str):
        if root is None:
            raise DataError(f"image path {ref!r} needs a data root to be opened", field=field)
        return open_image(root, ref, max_pixels=max_pixels, field=field)
    raise DataError(f"not an image reference: {type(ref).__name__}", field=field)


def load_images(
    refs: list[ImageRef],
    root: str | Path | None = None,
    *,
    record_id: str | None = None,
    field: str = "images",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Image.Image]:
    """:func:`load_image` for each of a record's images; errors name the record and ``field[i]``."""
    try:
        return [load_image(ref, root, max_pixels, field=f"{field}[{i}]") for i, ref in enumerate(refs)]
    except DataError as err:
        raise err.located(record_id=record_id) from None


def check_pixels(image: Image.Image, max_pixels: int, field: str | None = None) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise DataError(f"in-memory image is {width}x{height}, over the limit of {max_pixels} pixels", field=field)


class ImageChecker:
    """Checks image references at one strength (:data:`CHECK_MODES`), remembering results per file.

    A file shared by many records is checked (decoded) once; the memory is bounded (least recently used
    entries are dropped beyond ``cache_size``). Failures are cached too and re-raised for each record.
    """

    def __init__(
        self,
        root: str | Path | None,
        mode: str = "exists",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache_size: int = 4096,
    ) -> None:
        if mode not in CHECK_MODES:
            raise ConfigError(f"unknown image check {mode!r}; expected one of {list(CHECK_MODES)}")
        self.root = None if root is None else Path(root)
        self.mode = mode
        self.max_pixels = max_pixels
        self.cache_size = cache_size
        self._cache: OrderedDict[object, DataError | None] = OrderedDict()
        self.decoded = 0
        """How many files or blobs were actually checked (cache misses)."""

    def check(self, ref: ImageRef, field: str) -> None:
        """Raise :class:`DataError` (with ``field``) if ``ref`` fails the check."""
        if self.mode == "none":
            return
        if isinstance(ref, Image.Image):
            check_pixels(ref, self.max_pixels, field)
            return
        if isinstance(ref, ImageBlob):
            key: object = ("blob", len(ref.data), hashlib.blake2b(ref.data, digest_size=16).digest())
        else:
            key = ("path", ref)
        if key in self._cache:
            self._cache.move_to_end(key)
            failure = self._cache[key]
        else:
            failure = self._run(ref)
            self._cache[key] = failure
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if failure is not None:
            raise DataError(failure.message, field=field).with_traceback(failure.__traceback__)

    def check_record(self, record: Record) -> None:
        """:meth:`check` every image of ``record`` (``images[0]``, ``rejected_images[1]``...). Without a root,
        path references are left alone (there is nothing to open them under); blobs and PIL images are checked."""
        for key, refs in record.image_lists().items():
            for i, ref in enumerate(refs):
                if self.root is not None or not isinstance(ref, str):
                    self.check(ref, f"{key}[{i}]")

    def _run(self, ref: ImageRef) -> DataError | None:
        self.decoded += 1
        try:
            if isinstance(ref, ImageBlob):
                if not ref.data:
                    raise DataError(f"{_blob_name(ref)} is empty (0 bytes)")
                if self.mode == "decode":
                    decode_image(ref.data, max_pixels=self.max_pixels, name=_blob_name(ref))
            else:
                if self.root is None:
                    raise DataError(f"image path {ref!r} needs a data root to be checked")
                real = resolve_image(self.root, ref)
                if self.mode == "decode":
                    decode_image(real, max_pixels=self.max_pixels, name=f"image {str(self.root / ref)!r}")
        except DataError as err:
            traceback.clear_frames(err.__traceback__)  # keep where it failed (for --debug), not the locals
            return err
        return None


# ---------------------------------------------------------------------------------------------- writing


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of an in-memory image (lossless; the same image always gives the same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def content_path(data: bytes, suffix: str = ".png") -> str:
    """A relative path named after the content, for images that have no path of their own."""
    return f"images/{hashlib.sha256(data).hexdigest()[:20]}{suffix}"


def blob_target(blob: ImageBlob) -> str:
    """Where a blob's file goes under a data root: its own path if that is a safe relative path, else by content."""
    if blob.path:
        try:
            check_image_path(blob.path, "image")
            return blob.path
        except DataError:
            pass
    suffix = Path(blob.path).suffix.lower() if blob.path else ""
    return content_path(blob.data, suffix or _sniff_suffix(blob.data))


def write_image_file(root: str | Path, path: str, data: bytes, field: str | None = None) -> bool:
    """Write ``data`` at ``root/path`` atomically. Returns False if an identical file is already there.

    An existing different file is never overwritten: another dataset may use it.
    """
    from mmalign.files import atomic_path

    if image_file_there(root, path, data, field):
        return False
    with atomic_path(Path(root).resolve() / path) as tmp:
        tmp.write_bytes(data)
    return True


def image_file_there(root: str | Path, path: str, data: bytes, field: str | None = None) -> bool:
    """True if ``root/path`` already holds exactly ``data``, False if nothing is there; a :class:`DataError` if
    a different file is there (never overwritten: another dataset may use it) or the path leaves the root."""
    check_image_path(path, field or "image")
    root_real = Path(root).resolve()
    target = root_real / path
    if not target.parent.resolve().is_relative_to(root_real) or (
        target.is_symlink() and not target.resolve().is_relative_to(root_real)
    ):
        raise DataError(f"image path {path!r} escapes the output root through a symlink", field=field)
    if not target.exists():
        return False
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return True
    raise DataError(f"refusing to overwrite {str(target)!r}: a different file is already there", field=field)


def _sniff_suffix(data: bytes) -> str:
    signatures = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"GIF8": ".gif", b"BM": ".bmp", b"RIFF": ".webp"}
    for magic, suffix in signatures.items():
        if data.startswith(magic):
            return suffix
    return ".img"


def _blob_name(blob: ImageBlob) -> str:
    return f"embedded image {blob.path!r}" if blob.path else "embedded image"
