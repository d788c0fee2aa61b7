"""``hallucinate`` on COCO-style annotations: the reference caption edited at its object words.

* ``swap``: a mention of a present object (``puppy``) becomes the absent object (``cat``; plural kept, the
  article before it fixed), the present object chosen as the one that co-occurs most with the absent one;
* ``add``: the caption followed by ``There is also a <absent object> in the image.``;
* ``existence``: yes/no questions about a present and the hallucinated object.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from mmalign.data.records import PreferenceRecord
from mmalign.objects import shapes
from mmalign.pairs.coco import find_mentions, plural
from mmalign.pairs.hallucinate_common import existence_pairs, pair, pick_absent

if TYPE_CHECKING:
    from mmalign.pairs.hallucinate_common import HallucinateOptions
    from mmalign.pairs.sources import Cooccurrence

ARTICLE_BEFORE = re.compile(r"\b(a|an|A|An)\s+$")


def coco_pairs(
    unit: dict[str, Any], shared: dict[str, Any], opts: HallucinateOptions, seed: int
) -> list[PreferenceRecord]:
    stats: Cooccurrence = shared["stats"]
    present: list[str] = unit["objects"]
    captions: list[str] = unit["captions"]
    if not stats.ranked_absent(present):  # the image holds every category: nothing absent to hallucinate
        return []
    picker = random.Random(f"{seed}:captions")
    order = list(range(len(captions)))
    picker.shuffle(order)
    out: list[PreferenceRecord] = []
    image = [unit["image"]]
    for j in order[: opts.captions_per_image]:
        caption = captions[j]
        suffix = f"-c{j}" if opts.captions_per_image > 1 else ""
        base = {"image_id": unit["id"], "objects": present, "caption_index": j}
        for kind in opts.kinds:
            rng = random.Random(f"{seed}:{j}:{kind}")
            rid = f"{unit['id']}-hal-{kind}{suffix}"
            target, choice = pick_absent(present, stats, rng, opts.cooccur_prob)
            info = {**base, "kind": kind, "object": target, "choice": choice}
            if kind == "add":
                stem = caption.rstrip()
                stem = stem if stem.endswith((".", "!", "?")) else stem + "."
                text = f"{stem} There is also {shapes.article(target)} {target} in the image."
                start = len(stem) + len(" There is also ") + len(shapes.article(target)) + 1
                out.append(
                    pair(rid, image, shapes.DESCRIBE_PROMPT, caption, text, [], [(start, start + len(target))], info)
                )
            elif kind == "swap":
                record = _swap(rid, image, caption, present, target, stats, info)
                out += [record] if record is not None else []
            elif kind == "existence" and (j == order[0]):
                out += existence_pairs(rid, image, present, target, rng, {**base, "kind": kind}, info)
    return out


def _swap(
    rid: str, image: list[str], caption: str, present: list[str], target: str, stats: Cooccurrence, info: dict[str, Any]
) -> PreferenceRecord | None:
    """Replace the mention of the present object most co-occurring with ``target``; None if none is mentioned."""
    mentions = [m for m in find_mentions(caption) if m.object in present]
    if not mentions:
        return None
    best = max(stats.count(m.object, target) for m in mentions)
    mention = next(m for m in mentions if stats.count(m.object, target) == best)
    word = plural(target) if mention.plural else target
    head, tail = caption[: mention.start], caption[mention.end :]
    article = ARTICLE_BEFORE.search(head)
    if article is not None and not mention.plural:
        new = shapes.article(target)
        new = new.capitalize() if article.group(1)[0].isupper() else new
        head = head[: article.start(1)] + new + head[article.end(1) :]
    text = head + word + tail
    start = len(head)  # after the article, whose length may have changed ("a" → "an")
    info = {**info, "replaced": mention.object, "replaced_words": caption[mention.start : mention.end]}
    return pair(
        rid,
        image,
        shapes.DESCRIBE_PROMPT,
        caption,
        text,
        [(mention.start, mention.end)],
        [(start, start + len(word))],
        info,
    )
