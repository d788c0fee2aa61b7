"""Fixtures for the model-layer tests: images and records (tiny models: ``tiny_dir`` in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image, ImageDraw

from mmalign.data.records import EvalItem, PreferenceRecord, SFTRecord, assistant, user_prompt

VLM_PRESETS = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3")
"""One tiny model per image-handling family (qwen2.5 shares qwen2's processor, not its vision tower)."""


def shape_image(colour: tuple[int, int, int] = (220, 40, 40), size: tuple[int, int] = (48, 48)) -> Image.Image:
    """A grey image with one filled circle."""
    image = Image.new("RGB", size, (64, 64, 64))
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 6, h // 6, w // 2, h // 2), fill=colour)
    return image


def sft(i: int, text: str = "There is a red circle.", question: str = "Describe the image.", **kw: Any) -> SFTRecord:
    images = kw.pop("images", [shape_image()])
    return SFTRecord(f"s-{i}", user_prompt(question, len(images)), assistant(text), images, **kw)


def pref(i: int, chosen: str = "There is a red circle.", rejected: str = "There is a red circle and a star.", **kw):
    images = kw.pop("images", [shape_image()])
    prompt = user_prompt(kw.pop("question", "Describe the image."), len(images))
    return PreferenceRecord(f"p-{i}", prompt, assistant(chosen), assistant(rejected), images, **kw)


def item(i: int, question: str = "Is there a red circle in the image?", answer: str = "Yes.", **kw) -> EvalItem:
    return EvalItem(f"e-{i}", "pope", question, answer, kw.pop("images", [shape_image()]), **kw)


@pytest.fixture
def mk() -> Any:
    """Builders for images and records (module-level helpers, for tests in other files of this folder)."""

    class Builders:
        image = staticmethod(shape_image)
        sft = staticmethod(sft)
        pref = staticmethod(pref)
        item = staticmethod(item)

    return Builders
