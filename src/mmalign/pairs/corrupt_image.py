"""``corrupt-image``: image-side pairs, the same response preferred with the real image over a degraded one.

Image DPO and mDPO's conditional preference (Wang et al., 2024) contrast a response given the real image
with the same response given a corrupted image; POVID (Zhou et al., 2024) degrades images with noise for
the same purpose. Each input record (SFT: its completion is both sides; preference: its text pair is kept)
becomes ``variants`` records whose ``rejected_images`` are the input images degraded by one of ``modes``
(:func:`mmalign.corruption.degrade`) at a severity drawn uniformly from [``severity_min``,
``severity_max``]. The degraded images are written as PNG files under the output root, named by content
(``images/corrupt-image/<hash>.png``); ``meta`` records the mode, severity and the parameters used.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mmalign.config import option
from mmalign.data.parse import record_from_dict
from mmalign.data.records import ImageBlob, PreferenceRecord, SFTRecord
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.registry import Builder, BuildInputs, Plan, check_choices, check_fraction
from mmalign.pairs.sources import read_record_units
from mmalign.seeding import derive_seed

IMAGE_DIR = "images/corrupt-image"


def _modes() -> tuple[str, ...]:
    from mmalign.corruption import DEGRADATIONS

    return DEGRADATIONS


@dataclass(frozen=True)
class CorruptImageOptions:
    modes: list[str] = option(
        ["blur", "pixelate", "noise", "mask", "crop"],
        "Degradations to draw from: blur (Gaussian), pixelate, noise (Gaussian), mask (random grid cells "
        "blanked), crop (a random region resized back, as mDPO).",
    )
    variants: int = option(1, "Records made per input record, each with a different mode (at most len(modes)).")
    severity_min: float = option(0.4, "Lowest severity drawn (0 = unchanged image, 1 = strongest).")
    severity_max: float = option(0.8, "Highest severity drawn (equal to severity_min for a fixed severity).")

    def __post_init__(self) -> None:
        check_choices(list(self.modes), _modes(), "modes")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"option 'modes' lists a mode twice: {self.modes}")
        check_fraction(self.severity_min, "severity_min")
        check_fraction(self.severity_max, "severity_max")
        if self.severity_min > self.severity_max:
            raise ConfigError(f"severity_min ({self.severity_min}) is above severity_max ({self.severity_max})")
        if not 1 <= self.variants <= len(self.modes):
            raise ConfigError(f"option 'variants' must be between 1 and {len(self.modes)} (one mode each)")


class CorruptImageBuilder(Builder):
    name: ClassVar[str] = "corrupt-image"
    options_class: ClassVar[type] = CorruptImageOptions
    unit_name: ClassVar[str] = "records"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        units, root, fingerprint, what = read_record_units(inputs, self.name)
        for unit in units:
            if not unit.get("images"):
                raise DataError(
                    "record has no image to corrupt", file=inputs.input, record_id=str(unit["id"]), field="images"
                )
        return Plan(units, root, fingerprint, {"root": str(root)}, what)

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        from mmalign.corruption import degrade
        from mmalign.data.images import encode_png, load_images

        record = record_from_dict(unit)
        opts = self.options
        rng = random.Random(f"{seed}:modes")
        modes = list(opts.modes)
        chosen_modes = [modes.pop(min(int(rng.random() * len(modes)), len(modes) - 1)) for _ in range(opts.variants)]
        if isinstance(record, SFTRecord):
            chosen, rejected = record.completion, record.completion
            chosen_spans = rejected_spans = None
        else:
            assert isinstance(record, PreferenceRecord)
            chosen, rejected = record.chosen, record.rejected
            chosen_spans, rejected_spans = record.chosen_spans, record.rejected_spans
        images = load_images(record.images, shared["root"], record_id=record.id)
        out = []
        for mode in chosen_modes:
            severity = round(opts.severity_min + (opts.severity_max - opts.severity_min) * rng.random(), 4)
            blobs, params = [], []
            for i, image in enumerate(images):
                generator = np.random.default_rng(derive_seed(seed, mode, i, bits=64))
                degraded, used = degrade(image, mode, severity, generator)
                data = encode_png(degraded)
                blobs.append(ImageBlob(f"{IMAGE_DIR}/{hashlib.sha256(data).hexdigest()[:20]}.png", data))
                params.append(used)
            meta = {
                "from_id": record.id,
                "from_source": record.source,
                "mode": mode,
                "severity": severity,
                "params": params[0] if len(params) == 1 else params,
                "from_meta": record.meta,
            }
            out.append(
                PreferenceRecord(
                    id=f"{record.id}-{mode}",
                    prompt=record.prompt,
                    chosen=chosen,
                    rejected=rejected,
                    images=list(record.images),
                    rejected_images=blobs,
                    chosen_spans=chosen_spans,
                    rejected_spans=rejected_spans,
                    source=self.name,
                    meta=meta,
                )
            )
        return out
