"""Decoding image bytes safely: the pixel limit checked from the header, before any pixel data is decompressed.

A decompression bomb is a tiny file that expands to gigabytes: :func:`decode_image` reads the header first and
refuses images with more than ``max_pixels`` pixels (:data:`mmalign.data.limits.DEFAULT_MAX_PIXELS` unless
given); PIL's own ``DecompressionBombError`` is caught as well. Only common raster formats are opened (no EPS,
which PIL hands to Ghostscript). Every failure is a :class:`DataError` naming the image.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

from PIL import Image

from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.errors import DataError

SAFE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
"""Formats PIL may use to open a file. Others (EPS runs Ghostscript) are refused."""


def decode_image(
    source: Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str | None = None, name: str | None = None
) -> Image.Image:
    """Decode a file or encoded bytes to an RGB image, refusing more than ``max_pixels`` from the header."""
    label = name or (str(source) if isinstance(source, Path) else "embedded image")
    if isinstance(source, bytes) and not source:
        raise DataError(f"{label} is empty (0 bytes)", field=field)
    stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    try:
        with warnings.catch_warnings():
            # our own limit applies below; PIL's warning threshold would only add noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=SAFE_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise DataError(
                    f"{label} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                    "(possible decompression bomb; raise --max-pixels if the image is genuine)",
                    field=field,
                )
            image.load()
            return image.convert("RGB")
    except Image.DecompressionBombError as err:  # PIL refuses from the header, at twice its own threshold
        raise DataError(_bomb_message(label, str(err), max_pixels), field=field) from None
    except Image.UnidentifiedImageError:
        formats = ", ".join(SAFE_FORMATS)
        raise DataError(f"{label} is not a readable image (allowed formats: {formats})", field=field) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise DataError(f"{label} is corrupt or truncated: {_one_line(err)}", field=field) from None
    finally:
        stream.close()


def _bomb_message(label: str, pil_message: str, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", pil_message)
    pixels = int(found[1]) if found else None
    size = f" is {pixels} pixels," if pixels is not None else ""
    if pixels is not None and pixels <= max_pixels:  # --max-pixels was raised past what PIL itself will open
        pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return f"{label}{size} over PIL's own limit of {pil_limit} pixels (possible decompression bomb)"
    return (
        f"{label}{size} over the limit of {max_pixels} pixels "
        "(possible decompression bomb; raise --max-pixels if the image is genuine)"
    )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
