"""``hallucinate``: rejected responses made by editing a correct one with objects absent from the image.

HA-DPO (Zhao et al., 2023) and POVID (Zhou et al., 2024) pair a ground-truth response with a hallucinated
rewrite of it. Here the rewrite is rule-based, from ground-truth object lists, so every edit is known
exactly and spanned (``rejected_spans`` on the inserted or changed words, ``chosen_spans`` on the words they
replace) for segment-weighted DPO (RLHF-V's DDPO, Yu et al., 2023). Kinds of pair:

* ``add``: the caption plus one absent object (in the world, named right after the present object it
  co-occurs with most, as a co-occurrence-biased captioner would);
* ``swap``: one present object replaced by an absent one (the present object it co-occurs with most);
* ``attribute``: one object's colour changed (to a type absent from the scene) or its size flipped (world);
* ``count``: "How many objects are there?" answered one off (world);
* ``existence``: "Is there a X in the image?" for a present X (chosen "Yes.") and for the hallucinated
  absent X (chosen "No."), the rejected answer the wrong one.

Which absent object: with probability ``cooccur_prob`` the one that co-occurs most with the present objects
in the source's statistics (the world's train split, or the COCO annotations themselves), else one drawn
uniformly from the absent ones; ``meta.choice`` says which. World text comes from the world's own templates
(:mod:`mmalign.objects.shapes`), so a rejected caption is exactly what a hallucinating model would say.
``critiques: true`` adds a truthful critique of each side (:mod:`.hallucinate_critiques`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, ClassVar

from mmalign.data.records import PreferenceRecord
from mmalign.errors import ConfigError
from mmalign.objects import shapes
from mmalign.pairs.hallucinate_common import (
    WORLD_ONLY,
    HallucinateOptions,
    Span,
    anchor,
    answer_span,
    caption_with_spans,
    existence_pairs,
    pair,
    pick_absent,
)
from mmalign.pairs.hallucinate_critiques import with_critiques
from mmalign.pairs.registry import Builder, BuildInputs, Plan, file_fingerprint
from mmalign.pairs.sources import Cooccurrence, read_world_split


class HallucinateBuilder(Builder):
    name: ClassVar[str] = "hallucinate"
    options_class: ClassVar[type] = HallucinateOptions
    unit_name: ClassVar[str] = "images"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        if inputs.world is not None:
            world = read_world_split(inputs, self.name)
            cfg = world.config
            shared = {
                "source": "world",
                "stats": Cooccurrence.from_world(world.info, "train"),
                "sizes": cfg.object_sizes,
                "colours": list(cfg.colours),
                "max_count": cfg.max_objects,
            }
            return Plan(world.rows, world.root, world.fingerprint, shared, world.description)
        if inputs.input is None:
            raise ConfigError("hallucinate needs --world DIR or --input (a directory of COCO-style annotations)")
        from mmalign.data.coco import read_coco

        world_only = [k for k in self.options.kinds if k in WORLD_ONLY]
        if world_only:
            raise ConfigError(f"kinds {', '.join(world_only)} need the shapes world; drop them for COCO-style input")
        coco = read_coco(Path(inputs.input), self.options.image_prefix)
        stats = Cooccurrence.from_sets(coco.categories, (u["objects"] for u in coco.units))
        root = Path(inputs.root) if inputs.root is not None else Path(inputs.input).resolve().parent
        what = f"{len(coco.units)} images of {inputs.input}"
        return Plan(coco.units, root, file_fingerprint(*coco.files), {"source": "coco", "stats": stats}, what)

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        if shared["source"] == "world":
            records = world_pairs(unit, shared, self.options, seed)
        else:
            from mmalign.pairs.hallucinate_coco import coco_pairs

            records = coco_pairs(unit, shared, self.options, seed)
        return [with_critiques(r) for r in records] if self.options.critiques else records


# ---------------------------------------------------------------------------------------------- world


def world_pairs(
    row: dict[str, Any], shared: dict[str, Any], opts: HallucinateOptions, seed: int
) -> list[PreferenceRecord]:
    """Every requested kind of pair for one world scene (a ``scenes.jsonl`` row)."""
    stats: Cooccurrence = shared["stats"]
    sizes: bool = shared["sizes"]
    objects = row["objects"]
    present = [o["name"] for o in objects]
    partners = set(row.get("absent_partners", []))
    obj_size = [o["size"] if sizes else None for o in objects]
    phrases = [shapes.object_phrase(o["colour"], o["shape"], s) for o, s in zip(objects, obj_size, strict=True)]
    chosen, chosen_spans = caption_with_spans(phrases)
    base = {"scene_id": row["id"], "objects": present}
    image = [row["image"]]
    out: list[PreferenceRecord] = []
    for kind in opts.kinds:
        rng = random.Random(f"{seed}:{kind}")
        rid = f"{row['id']}-hal-{kind}"
        target, choice = pick_absent(present, stats, rng, opts.cooccur_prob)
        colour, shape = target.split(" ", 1)
        info = {**base, "kind": kind, "object": target, "choice": choice, "absent_partner": target in partners}
        if kind == "add":
            at = anchor(present, target, stats) + 1 if any(stats.count(p, target) for p in present) else len(phrases)
            size = (shapes.SIZES[0] if rng.random() < 0.5 else shapes.SIZES[1]) if sizes else None
            text, spans = caption_with_spans([*phrases[:at], shapes.object_phrase(colour, shape, size), *phrases[at:]])
            out.append(pair(rid, image, shapes.DESCRIBE_PROMPT, chosen, text, [], [_pair(spans[at])], info))
        elif kind == "swap":
            k = anchor(present, target, stats)
            text, spans = caption_with_spans(
                [*phrases[:k], shapes.object_phrase(colour, shape, obj_size[k]), *phrases[k + 1 :]]
            )
            info["replaced"] = present[k]
            out.append(
                pair(
                    rid, image, shapes.DESCRIBE_PROMPT, chosen, text, [_pair(chosen_spans[k])], [_pair(spans[k])], info
                )
            )
        elif kind == "attribute":
            record = _attribute(rid, image, row, phrases, chosen, chosen_spans, shared, rng, base)
            out += [record] if record is not None else []
        elif kind == "count":
            n = len(objects)
            wrong = n + 1 if n == 1 or (n < shared["max_count"] and rng.random() < 0.5) else n - 1
            good, bad = shapes.sentence(shapes.NUMBER_WORDS[n]), shapes.sentence(shapes.NUMBER_WORDS[wrong])
            meta = {**base, "kind": kind, "count": n, "said": wrong}
            out.append(pair(rid, image, shapes.count_question(), good, bad, answer_span(good), answer_span(bad), meta))
        else:
            out += existence_pairs(rid, image, present, target, rng, {**base, "kind": kind}, info)
    return out


def _pair(span: Span) -> tuple[int, int]:
    return (span.start, span.end)


def _attribute(
    rid: str,
    image: list[str],
    row: dict[str, Any],
    phrases: list[str],
    chosen: str,
    chosen_spans: list[Span],
    shared: dict[str, Any],
    rng: random.Random,
    base: dict[str, Any],
) -> PreferenceRecord | None:
    """One object's colour changed to make a type absent from the scene, or (world with sizes) its size flipped."""
    objects = row["objects"]
    present = {o["name"] for o in objects}
    k = min(int(rng.random() * len(objects)), len(objects) - 1)
    obj = objects[k]
    colours = [c for c in shared["colours"] if shapes.object_name(c, obj["shape"]) not in present]
    flip_size = shared["sizes"] and (not colours or rng.random() < 0.5)
    if not colours and not flip_size:
        return None
    size = obj["size"] if shared["sizes"] else None
    if flip_size:
        new_size, new_colour = shapes.SIZES[1] if obj["size"] == shapes.SIZES[0] else shapes.SIZES[0], obj["colour"]
        old_word, new_word, attribute = obj["size"], new_size, "size"
    else:
        new_size, new_colour = size, colours[min(int(rng.random() * len(colours)), len(colours) - 1)]
        old_word, new_word, attribute = obj["colour"], new_colour, "colour"
    text, spans = caption_with_spans(
        [*phrases[:k], shapes.object_phrase(new_colour, obj["shape"], new_size), *phrases[k + 1 :]]
    )
    offset = 0 if attribute == "size" or not size else len(size) + 1  # the colour follows the size word
    chosen_span = (chosen_spans[k].start + offset, chosen_spans[k].start + offset + len(old_word))
    rejected_span = (spans[k].start + offset, spans[k].start + offset + len(new_word))
    meta = {
        **base,
        "kind": "attribute",
        "attribute": attribute,
        "object": obj["name"],
        "from": old_word,
        "to": new_word,
    }
    return pair(rid, image, shapes.DESCRIBE_PROMPT, chosen, text, [chosen_span], [rejected_span], meta)
