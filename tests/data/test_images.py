"""Safe image opening: root containment (also through symlinks), empty/corrupt files, pixel limits, caching."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from mmalign.data.decode import decode_image
from mmalign.data.images import (
    ImageChecker,
    encode_png,
    load_image,
    open_image,
    resolve_image,
    write_image_file,
)
from mmalign.data.records import ImageBlob
from mmalign.errors import ConfigError, DataError


def _png(size: tuple[int, int], colour: str = "green", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_open_returns_rgb(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.new("L", (3, 2), 128).save(tmp_path / "a" / "grey.png")
    image = open_image(tmp_path, "a/grey.png")
    assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../outside.png", "escapes the data root"),
        ("a/../../outside.png", "escapes the data root"),
        ("/etc/passwd", "is absolute"),
        ("C:\\Windows\\x.png", "is absolute"),
        ("", "empty image path"),
    ],
)
def test_paths_outside_the_root_are_refused(path: str, words: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=words) as caught:
        resolve_image(tmp_path, path, "images[2]")
    assert caught.value.field == "images[2]"


def test_symlinks_are_followed_and_checked(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "secret.png"
    (root / "images").mkdir(parents=True)
    outside.write_bytes(_png((2, 2)))
    os.symlink(outside, root / "images" / "evil.png")
    os.symlink(tmp_path, root / "up")  # a symlinked folder that leads out
    with pytest.raises(DataError, match="through a symlink"):
        resolve_image(root, "images/evil.png")
    with pytest.raises(DataError, match="through a symlink"):
        resolve_image(root, "up/secret.png")
    (root / "images" / "real.png").write_bytes(_png((2, 2)))
    os.symlink(root / "images" / "real.png", root / "images" / "alias.png")  # inside: fine
    assert resolve_image(root, "images/alias.png") == (root / "images" / "real.png").resolve()


def test_missing_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="image file not found"):
        resolve_image(tmp_path, "none.png")
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        resolve_image(tmp_path, "empty.png")
    with pytest.raises(DataError, match="is not a regular file"):
        resolve_image(tmp_path, "dir.png")


def test_corrupt_and_unsupported_formats() -> None:
    with pytest.raises(DataError, match="not a readable image"):
        decode_image(b"GIF89a" + b"\x00" * 3)
    good = _png((40, 40), "red")
    with pytest.raises(DataError, match=r"not a readable image|corrupt or truncated"):
        decode_image(good[:30])
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(DataError, match="not a readable image"):  # EPS would run Ghostscript: never opened
        decode_image(eps)
    with pytest.raises(DataError, match="empty"):
        decode_image(b"")


def test_pixel_limit_is_checked_from_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png((300, 200))  # 60,000 pixels
    assert decode_image(data, max_pixels=60_000).size == (300, 200)
    loads: list[int] = []
    real_load = Image.Image.load

    def spy(self: Image.Image) -> object:
        loads.append(1)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    with pytest.raises(DataError, match=r"300x200 = 60000 pixels, over the limit of 59999"):
        decode_image(data, max_pixels=59_999)
    assert loads == []  # refused before any pixel was decoded


def test_pil_decompression_bomb_error_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises past twice this
    with pytest.raises(DataError, match="possible decompression bomb") as caught:
        decode_image(_png((50, 50)), max_pixels=10**9, field="images[0]")
    assert caught.value.field == "images[0]"


def test_load_image_handles_every_reference(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(_png((4, 3), "blue"))
    from_path = load_image("x.png", tmp_path)
    from_blob = load_image(ImageBlob("x.png", (tmp_path / "x.png").read_bytes()))
    from_pil = load_image(Image.new("RGBA", (4, 3), (0, 0, 255, 255)))
    for image in (from_path, from_blob, from_pil):
        assert image.mode == "RGB" and image.size == (4, 3) and image.getpixel((1, 1)) == (0, 0, 255)
    with pytest.raises(DataError, match="needs a data root"):
        load_image("x.png")
    with pytest.raises(DataError, match="over the limit of 11 pixels"):
        load_image(Image.new("RGB", (4, 3)), max_pixels=11)


def test_checker_decodes_a_shared_file_once(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(_png((2, 2)))
    (tmp_path / "bad.png").write_bytes(b"junk" * 10)
    checker = ImageChecker(tmp_path, "decode")
    for _ in range(5):
        checker.check("ok.png", "images[0]")
        with pytest.raises(DataError, match="not a readable image") as caught:
            checker.check("bad.png", "images[1]")
        assert caught.value.field == "images[1]"
    assert checker.decoded == 2
    blob = ImageBlob("b.png", _png((2, 2)))
    checker.check(blob, "images[0]")
    checker.check(ImageBlob("other/name.png", blob.data), "images[0]")  # same bytes: cached
    assert checker.decoded == 3


def test_checker_cache_is_bounded(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(_png((2, 2)))
    checker = ImageChecker(tmp_path, "decode", cache_size=2)
    for i in [0, 1, 2, 0]:  # 0 was evicted by 2
        checker.check(f"{i}.png", "images[0]")
    assert checker.decoded == 4 and len(checker._cache) == 2


def test_checker_modes(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"junk")
    ImageChecker(tmp_path, "exists").check("junk.png", "images[0]")  # present and non-empty is enough
    ImageChecker(tmp_path, "none").check("missing.png", "images[0]")
    with pytest.raises(DataError):
        ImageChecker(tmp_path, "decode").check("junk.png", "images[0]")
    with pytest.raises(ConfigError, match="unknown image check 'bogus'"):
        ImageChecker(tmp_path, "bogus")


def test_write_image_file_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    data = encode_png(Image.new("RGB", (2, 2), "red"))
    assert encode_png(Image.new("RGB", (2, 2), "red")) == data  # deterministic: content names are stable
    assert write_image_file(tmp_path, "images/a.png", data) is True
    assert write_image_file(tmp_path, "images/a.png", data) is False
    with pytest.raises(DataError, match="refusing to overwrite"):
        write_image_file(tmp_path, "images/a.png", data + b"x")
    with pytest.raises(DataError, match="escapes the data root"):
        write_image_file(tmp_path, "../a.png", data)
    os.symlink(tmp_path.parent, tmp_path / "up")
    with pytest.raises(DataError, match="escapes the output root"):
        write_image_file(tmp_path, "up/a.png", data)
