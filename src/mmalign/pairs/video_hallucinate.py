"""``video-hallucinate``: temporal hallucination pairs from a video world's clips (``mmalign world --video``).

The chosen response is the clip's true caption (the world's own text, :func:`mmalign.world.text.clip_caption`,
checked equal to the row's ``caption``): the first frame as a still caption, then one sentence per event in time
order. The rejected one is the same caption with one temporal hallucination, rule-made from the ground truth so
the edit is known exactly (``meta``) and spanned (sentence spans, for segment-weighted DPO). Video DPO on such
pairs follows LLaVA-Hound (Zhang et al., 2024) and the temporal error types of VideoHallucer (Wang et al., 2024):

* ``order``: two events (with different sentences) swapped in time, everything else kept;
* ``invent``: an appearance of an object never in the clip, or a disappearance of a present object that never
  disappears, inserted at a drawn point of the clip;
* ``miss``: a real appearance or disappearance left out (``Nothing changes.`` if it was the only event);
* ``count``: one event said to happen twice (``The red circle disappears twice.``) when it happens once;
* ``static``: the first frame's caption and ``Nothing changes.``, for a clip that changes;
* ``before``: yes/no questions about time, "Does the red circle disappear before the green square appears?"
  (the ``video_hallucer`` task's wording), asked in the true order (chosen ``Yes.``) and the swapped one (chosen
  ``No.``), for two events whose kinds never happen the other way round.

A kind that does not apply to a clip (``order`` with one event, ``static`` for a clip without events) is skipped;
the skips per kind are counted when the build is planned and printed with its result. Draws are seeded per clip
and kind, so the output is deterministic by seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.data.records import PreferenceRecord, assistant
from mmalign.errors import DataError
from mmalign.objects import shapes
from mmalign.pairs.hallucinate_common import answer_span
from mmalign.pairs.registry import Builder, BuildInputs, Plan, check_choices
from mmalign.pairs.video_clips import (
    DESCRIBE_VIDEO,
    ClipOptions,
    clip_video,
    read_clip_split,
    start_scene,
    video_prompt,
)
from mmalign.world.config import WorldConfig
from mmalign.world.text import NO_CHANGE, clip_caption, event_sentence, reference_caption

KINDS: tuple[str, ...] = ("order", "invent", "miss", "count", "static", "before")
VIDEO_AS: tuple[str, ...] = ("file", "frames")
BASE_VERB = {"appear": "appear", "disappear": "disappear", "move": "move", "change_colour": "change colour"}
THIRD_PERSON = {"appear": "appears", "disappear": "disappears", "move": "moves", "change_colour": "changes colour"}


@dataclass(frozen=True)
class VideoHallucinateOptions(ClipOptions):
    kinds: list[str] = option(
        ["order", "invent", "miss", "count", "static", "before"],
        f"Kinds of pair made per clip, each when the clip allows it: {', '.join(KINDS)} (see docs/video.md).",
    )
    video: str = option("file", "How the clip goes in: file (its mp4, read with the sampling) or frames (its PNGs).")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(list(self.kinds), KINDS, "kinds")
        check_choices([self.video], VIDEO_AS, "video")


@dataclass(frozen=True)
class Truth:
    """A clip's ground truth as the text edits need it."""

    still: str
    """The first frame's caption."""
    events: list[dict[str, Any]]
    sentences: list[str]
    """One per event, in time order."""
    per_frame: list[list[str]]
    types: list[str]
    """Every object type of the world."""
    config: WorldConfig


def caption_spans(still: str, sentences: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The clip caption made of ``still`` and ``sentences`` (``Nothing changes.`` when there are none), and each
    sentence's span (the last one that of ``Nothing changes.`` when there are no sentences)."""
    parts = [still, *(sentences or [NO_CHANGE])]
    spans, pos = [], len(still) + 1
    for s in parts[1:]:
        spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    return " ".join(parts), spans


def truth_of(row: dict[str, Any], cfg: WorldConfig, types: list[str]) -> Truth:
    where = {"record_id": row["id"]}
    start = start_scene(row, cfg, where)
    events = [dict(e) for e in row["events"]]
    caption = clip_caption(start, events, cfg)
    if caption != row["caption"]:
        raise DataError(f"caption {row['caption']!r} is not the ground truth's {caption!r}", field="caption", **where)
    sentences = [event_sentence(e, cfg) for e in events]
    return Truth(reference_caption(start, cfg), events, sentences, row["per_frame"], types, cfg)


# ------------------------------------------------------------------------------------------------- kinds


def _pick(rng: random.Random, options: list[Any]) -> Any:
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def order_options(t: Truth) -> list[tuple[int, int]]:
    n = len(t.events)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if t.sentences[i] != t.sentences[j]]


def invent_options(t: Truth) -> list[tuple[int, str, str]]:
    """(slot, type, object): an appearance of a type never in the clip, or a disappearance of an object present
    after ``slot`` events that never disappears; ``slot`` k puts the sentence after the k-th event."""
    seen = {name for frame in t.per_frame for name in frame}
    gone = {e["object"] for e in t.events if e["type"] == "disappear"}
    out = []
    for k in range(len(t.events) + 1):
        frame = t.per_frame[t.events[k - 1]["frame"] if k else 0]
        out += [(k, "appear", name) for name in t.types if name not in seen]
        out += [(k, "disappear", name) for name in frame if name not in gone]
    return out


def miss_options(t: Truth) -> list[int]:
    return [i for i, e in enumerate(t.events) if e["type"] in ("appear", "disappear")]


def count_options(t: Truth) -> list[int]:
    return [i for i, s in enumerate(t.sentences) if t.sentences.count(s) == 1]


def before_options(t: Truth) -> list[tuple[int, int]]:
    """(i, j), i before j, of events whose kinds (type, object) never happen the other way round."""
    keys = [(e["type"], e["object"]) for e in t.events]
    out = []
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            a, b = keys[i], keys[j]
            later_a = max(k for k, key in enumerate(keys) if key == a)
            earlier_b = min(k for k, key in enumerate(keys) if key == b)
            if a != b and later_a < earlier_b:
                out.append((i, j))
    return out


OPTIONS = {
    "order": order_options,
    "invent": invent_options,
    "miss": miss_options,
    "count": count_options,
    "static": lambda t: [None] if t.events else [],
    "before": before_options,
}
"""Per kind, what it could edit in a clip (empty: the kind does not apply)."""

WHY_SKIPPED = {
    "order": "fewer than two events with different sentences",
    "invent": "nothing to invent",
    "miss": "no appearance or disappearance",
    "count": "no event said once",
    "static": "no event",
    "before": "no two events in a fixed order",
}


def _edit(
    kind: str, t: Truth, choice: Any, rng: random.Random
) -> tuple[list[str], dict[str, Any], list[int], list[int]]:
    """The rejected caption's sentences, what changed, and which sentences (indices) the spans cover on the chosen
    and on the rejected side."""
    s = list(t.sentences)
    if kind == "order":
        i, j = choice
        s[i], s[j] = s[j], s[i]
        return s, {"swapped": [t.events[i], t.events[j]], "positions": [i, j]}, [i, j], [i, j]
    if kind == "invent":
        k, kind_of, name = choice
        event: dict[str, Any] = {"type": kind_of, "object": name}
        if kind_of == "appear":
            event["size"] = _pick(rng, list(shapes.SIZES)) if t.config.object_sizes else shapes.SIZES[1]
        after = t.events[k - 1]["frame"] if k else 0
        change = {"invented": event, "position": k, "after_frame": after}
        return [*s[:k], event_sentence(event, t.config), *s[k:]], change, [], [k]
    if kind == "miss":
        missed = t.events[choice]
        rejected = s[:choice] + s[choice + 1 :]
        return rejected, {"missed": missed, "position": choice}, [choice], [] if rejected else [0]
    if kind == "count":
        s[choice] = s[choice][:-1] + " twice."
        return s, {"event": t.events[choice], "count": 1, "said": 2, "position": choice}, [choice], [choice]
    assert kind == "static"
    return [], {}, list(range(len(t.events))), [0]


@dataclass(frozen=True)
class TextPair:
    """One pair's text, before it becomes a record (the clip's video is added then)."""

    suffix: str
    """Appended to the record id (``-yes`` / ``-no`` for the two questions of ``before``; empty otherwise)."""
    question: str
    chosen: str
    rejected: str
    chosen_spans: list[tuple[int, int]]
    rejected_spans: list[tuple[int, int]]
    meta: dict[str, Any]


def kind_pairs(t: Truth, kind: str, seed: int, base: dict[str, Any]) -> list[TextPair]:
    """The pairs of one kind for one clip (none when the kind does not apply)."""
    options = OPTIONS[kind](t)
    if not options:
        return []
    rng = random.Random(f"{seed}:{kind}")
    choice = _pick(rng, options)
    if kind == "before":
        first, then = t.events[choice[0]], t.events[choice[1]]

        def ask(a: dict[str, Any], b: dict[str, Any]) -> str:
            return f"Does the {a['object']} {BASE_VERB[a['type']]} before the {b['object']} {THIRD_PERSON[b['type']]}?"

        yes, no = shapes.sentence("yes"), shapes.sentence("no")
        meta = {**base, "kind": kind, "first": first, "then": then}
        y, n = answer_span(yes), answer_span(no)
        return [
            TextPair("-yes", ask(first, then), yes, no, y, n, meta),
            TextPair("-no", ask(then, first), no, yes, n, y, meta),
        ]
    rejected_sentences, change, chosen_at, rejected_at = _edit(kind, t, choice, rng)
    chosen, chosen_spans = caption_spans(t.still, t.sentences)
    rejected, rejected_spans = caption_spans(t.still, rejected_sentences)
    return [
        TextPair(
            "",
            DESCRIBE_VIDEO,
            chosen,
            rejected,
            [chosen_spans[i] for i in chosen_at],
            [rejected_spans[i] for i in rejected_at],
            {**base, "kind": kind, **change},
        )
    ]


def count_skipped(rows: list[dict[str, Any]], cfg: WorldConfig, types: list[str], kinds: list[str]) -> dict[str, int]:
    """Per kind, the clips it does not apply to (every clip's caption is checked against the truth on the way)."""
    skipped = {kind: 0 for kind in kinds}
    for row in rows:
        truth = truth_of(row, cfg, types)
        for kind in kinds:
            skipped[kind] += not OPTIONS[kind](truth)
    return skipped


class VideoHallucinateBuilder(Builder):
    name: ClassVar[str] = "video-hallucinate"
    options_class: ClassVar[type] = VideoHallucinateOptions
    unit_name: ClassVar[str] = "clips"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        clips = read_clip_split(inputs, self.name)
        types = list(clips.info.get("objects", []))
        try:
            skipped = count_skipped(clips.rows, clips.config, types, self.options.kinds)
        except DataError as err:
            raise err.located(file=clips.root / clips.split / "clips.jsonl") from None
        what = clips.description
        if any(skipped.values()):
            what += "; skipped as not applicable: " + ", ".join(
                f"{kind} {n} ({WHY_SKIPPED[kind]})" for kind, n in skipped.items() if n
            )
        shared = {"config": clips.config, "types": types}
        return Plan(clips.rows, clips.root, clips.fingerprint, shared, what)

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        truth = truth_of(unit, shared["config"], shared["types"])
        video = clip_video(unit, self.options, self.options.video == "frames")
        base = {"clip_id": unit["id"], "events": truth.events}
        out = []
        for kind in self.options.kinds:
            for p in kind_pairs(truth, kind, seed, base):
                out.append(
                    PreferenceRecord(
                        id=f"{unit['id']}-vhal-{kind}{p.suffix}",
                        prompt=video_prompt(p.question),
                        chosen=assistant(p.chosen),
                        rejected=assistant(p.rejected),
                        chosen_spans=p.chosen_spans,
                        rejected_spans=p.rejected_spans,
                        videos=[video],
                        source=self.name,
                        meta=p.meta,
                    )
                )
        return out
