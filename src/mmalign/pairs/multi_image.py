"""``multi-image``: prompts over 2-4 images whose rejected answer confuses which image holds an object.

MIA-DPO (Liu et al., 2024) extends single-image preference data to several images and takes as rejected
the answers that attend to the wrong image. Here groups of world scenes are shown in order ("image1" is the
first image of the prompt) and the confusion is built in from the ground truth:

* ``which``: "In which image is there a red circle?" for an object in exactly one image; rejected names
  another image of the group (one holding an object that co-occurs with it, if any);
* ``exists``: "Is there a red circle in image1?" where the red circle is in another image: chosen "No.",
  rejected "Yes."; and the same question for the image that holds it (chosen "Yes.") for balance;
* ``describe``: "Describe image2." answered with another image's caption; spans mark the objects the
  wrong caption names that image2 does not hold (and, in the chosen caption, those it misses).

Group ``i`` draws its size in [``min_images``, ``max_images``] and its scenes from the split with its own
seed, so groups are independent units.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.data.records import PreferenceRecord
from mmalign.errors import ConfigError
from mmalign.objects import shapes
from mmalign.pairs.hallucinate_common import answer_span, caption_with_spans
from mmalign.pairs.hallucinate_common import pair as text_pair
from mmalign.pairs.registry import Builder, BuildInputs, Plan, check_choices
from mmalign.pairs.sources import Cooccurrence, read_world_split

KINDS: tuple[str, ...] = ("which", "exists", "describe")
MAX_IMAGES = 4
"""The world's vocabulary names images ``image1`` to ``image4``."""


@dataclass(frozen=True)
class MultiImageOptions:
    kinds: list[str] = option(list(KINDS), f"Kinds of pair made per group: {', '.join(KINDS)}.")
    min_images: int = option(2, "Fewest images in a prompt.")
    max_images: int = option(4, f"Most images in a prompt (at most {MAX_IMAGES}).")
    groups: int | None = option(None, "Groups (prompts) to make; default: half the scenes of the split.")

    def __post_init__(self) -> None:
        check_choices(list(self.kinds), KINDS, "kinds")
        if not 2 <= self.min_images <= self.max_images <= MAX_IMAGES:
            raise ConfigError(
                f"need 2 <= min_images <= max_images <= {MAX_IMAGES}, got {self.min_images}, {self.max_images}"
            )
        if self.groups is not None and self.groups < 1:
            raise ConfigError(f"option 'groups' must be at least 1, got {self.groups}")


def _pair(*args: Any) -> PreferenceRecord:
    return text_pair(*args, source=MultiImageBuilder.name)


def image_name(k: int) -> str:
    """How prompts name the k-th image (0-based k): ``image1``."""
    return f"image{k + 1}"


class MultiImageBuilder(Builder):
    name: ClassVar[str] = "multi-image"
    options_class: ClassVar[type] = MultiImageOptions
    unit_name: ClassVar[str] = "groups"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        world = read_world_split(inputs, self.name)
        rows = world.rows
        if len(rows) < self.options.min_images:
            raise ConfigError(
                f"the {world.split} split has {len(rows)} scenes; a group needs {self.options.min_images}"
            )
        n_groups = self.options.groups if self.options.groups is not None else max(1, len(rows) // 2)
        units = []
        for i in range(n_groups):
            rng = random.Random(f"{seed}:{self.name}:group:{i}")
            size = self.options.min_images + int(rng.random() * (self.options.max_images - self.options.min_images + 1))
            size = min(size, len(rows))
            picked = rng.sample(range(len(rows)), size)
            units.append({"id": f"{world.split}-mi-{i:06d}", "scenes": [rows[j] for j in picked]})
        shared = {"stats": Cooccurrence.from_world(world.info, "train"), "sizes": world.config.object_sizes}
        what = f"{n_groups} groups of 2-{self.options.max_images} scenes of world {world.root} ({world.split})"
        return Plan(units, world.root, world.fingerprint, shared, what)

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        scenes = unit["scenes"]
        images = [s["image"] for s in scenes]
        names = [set(s["present"]) for s in scenes]
        base = {"scene_ids": [s["id"] for s in scenes]}
        out: list[PreferenceRecord] = []
        for kind in self.options.kinds:
            rng = random.Random(f"{seed}:{kind}")
            rid = f"{unit['id']}-{kind}"
            if kind == "describe":
                out += _describe(rid, scenes, images, shared, rng, base)
                continue
            # objects held by exactly one image of the group, and which image holds each
            unique = sorted(
                {n for k, here in enumerate(names) for n in here if sum(n in other for other in names) == 1}
            )
            if not unique:
                continue
            target = unique[min(int(rng.random() * len(unique)), len(unique) - 1)]
            holder = next(k for k, here in enumerate(names) if target in here)
            wrong = _confused_image(target, holder, names, shared["stats"], rng)
            info = {**base, "kind": kind, "object": target, "image": holder, "confused_with": wrong}
            colour, shape = target.split(" ", 1)
            if kind == "which":
                question = f"In which image is there {shapes.object_phrase(colour, shape)}?"
                good, bad = shapes.sentence(image_name(holder)), shapes.sentence(image_name(wrong))
                out.append(_pair(rid, images, question, good, bad, answer_span(good), answer_span(bad), info))
            else:
                yes, no = shapes.sentence("yes"), shapes.sentence("no")
                ask_wrong = f"Is there {shapes.object_phrase(colour, shape)} in {image_name(wrong)}?"
                ask_right = f"Is there {shapes.object_phrase(colour, shape)} in {image_name(holder)}?"
                out.append(
                    _pair(
                        f"{rid}-no",
                        images,
                        ask_wrong,
                        no,
                        yes,
                        answer_span(no),
                        answer_span(yes),
                        {**info, "asked_image": wrong, "present": False},
                    )
                )
                out.append(
                    _pair(
                        f"{rid}-yes",
                        images,
                        ask_right,
                        yes,
                        no,
                        answer_span(yes),
                        answer_span(no),
                        {**info, "asked_image": holder, "present": True},
                    )
                )
        return out


def _confused_image(target: str, holder: int, names: list[set[str]], stats: Any, rng: random.Random) -> int:
    """Another image of the group: the one whose objects co-occur most with ``target`` (ties: at random)."""
    others = [k for k in range(len(names)) if k != holder]
    scores = [stats.score(target, names[k]) for k in others]
    best = [k for k, s in zip(others, scores, strict=True) if s == max(scores)]
    return best[min(int(rng.random() * len(best)), len(best) - 1)]


def _describe(
    rid: str,
    scenes: list[dict[str, Any]],
    images: list[str],
    shared: dict[str, Any],
    rng: random.Random,
    base: dict[str, Any],
) -> list[PreferenceRecord]:
    k = min(int(rng.random() * len(scenes)), len(scenes) - 1)
    names = [set(s["present"]) for s in scenes]
    others = [j for j in range(len(scenes)) if j != k and names[j] != names[k]]
    if not others:
        return []
    j = others[min(int(rng.random() * len(others)), len(others) - 1)]
    chosen, chosen_spans = _caption(scenes[k], shared["sizes"])
    rejected, rejected_spans = _caption(scenes[j], shared["sizes"])
    wrong = [
        (s.start, s.end) for s, o in zip(rejected_spans, scenes[j]["objects"], strict=True) if o["name"] not in names[k]
    ]
    missed = [
        (s.start, s.end) for s, o in zip(chosen_spans, scenes[k]["objects"], strict=True) if o["name"] not in names[j]
    ]
    info = {**base, "kind": "describe", "image": k, "confused_with": j}
    return [_pair(rid, images, f"Describe {image_name(k)}.", chosen, rejected, missed, wrong, info)]


def _caption(scene: dict[str, Any], sizes: bool) -> tuple[str, list[Any]]:
    phrases = [shapes.object_phrase(o["colour"], o["shape"], o["size"] if sizes else None) for o in scene["objects"]]
    return caption_with_spans(phrases)
