"""The shapes world's video tasks, built from a clip set's ground truth (``<split>/clips.jsonl``, written by
``mmalign world --video``; one row per clip with ``per_frame`` objects and time-ordered ``events``).

Every item carries its clip as the agreed video reference: ``{"path": <the clip's mp4>, "sampling": {"mode":
"uniform", "num_frames": n, "max_frames": n}}`` (all n frames, in order), or ``{"frames": [...]}`` (the clip's
frame files) when the row has no video file; in the item's ``videos`` where records have them, else (until the
records part lands) in ``meta.videos``. Three tasks, each deterministic per clip:

* ``video_hallucer`` (VideoHallucer style, scored with its pair accuracy, :mod:`mmalign.eval.metrics.videohallucer`):
  per clip up to four basic / hallucinated pairs (basic answer yes, hallucinated no), each a sub-task:

  - ``existence``: "Does a red circle appear in the video?" of an object present in some frame / of an object
    never present;
  - ``temporal``: "Does the red circle disappear before the green square appears?" for two events in their
    true order / in the swapped order (only events whose kinds never occur the other way round);
  - ``count``: "Are there three kinds of object in the video altogether?" with the number of object types (colour
    and shape, the world's unit: an object that changed colour counts under both names) over the clip / with the
    largest number in one frame when that differs (the count a model that looks at one frame gives), else one
    more;
  - ``event``: "Does the blue star change colour?" for an event that happened / for another event type that
    never happened to that object (under any of its names, when it changed colour);
* ``video_pope`` (temporal POPE, scored with POPE's metrics, :mod:`mmalign.eval.metrics.pope`): "Is there a blue
  star at the start of the video?", "... at the end of the video?", "Does a blue star appear in the video?"; per
  clip and scope one present object (yes) and one absent (no), the absent one preferably present at another
  time of the clip (``meta.negative`` = ``temporal``), else one never present (``random``);
* ``video_chair``: "Describe the video." with the clip's caption as the reference, the objects present at some
  time (the union of ``per_frame``) as ``objects`` and the events as ``meta.events``; scored with CHAIR over
  that union and event precision / recall (:mod:`mmalign.eval.scoring.video`).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from mmalign.data.parse import record_from_dict
from mmalign.data.records import EvalItem
from mmalign.errors import DataError
from mmalign.eval.metrics.official import read_jsonl
from mmalign.objects import shapes

VIDEO_TASKS: tuple[str, ...] = ("video_hallucer", "video_pope", "video_chair")
DESCRIBE_VIDEO = "Describe the video."

BASE_VERB = {"appear": "appear", "disappear": "disappear", "move": "move", "change_colour": "change colour"}
THIRD_PERSON = {"appear": "appears", "disappear": "disappears", "move": "moves", "change_colour": "changes colour"}
EVENT_QUESTION = {
    "appear": "Does the {obj} appear partway through the video?",
    "disappear": "Does the {obj} disappear before the end of the video?",
    "move": "Does the {obj} move?",
    "change_colour": "Does the {obj} change colour?",
}


def read_clips(world_dir: Path, split: str) -> list[dict[str, Any]]:
    """The split's clip rows, checked for what the tasks read."""
    path = world_dir / split / "clips.jsonl"
    if not path.is_file():
        raise DataError(f"the world has no {split}/clips.jsonl (generate it with `mmalign world --video`)", file=path)
    clips = []
    for line, row in read_jsonl(path):
        where = {"file": path, "line": line, "record_id": row.get("id")}
        for key, kind in (("id", str), ("per_frame", list), ("events", list)):
            if not isinstance(row.get(key), kind):
                raise DataError(f"missing or not a {kind.__name__}", field=key, **where)
        if not row["per_frame"] or not all(isinstance(f, list) for f in row["per_frame"]):
            raise DataError("must be a non-empty list of object lists", field="per_frame", **where)
        for k, event in enumerate(row["events"]):
            if not isinstance(event, dict) or not {"type", "object", "frame"} <= set(event):
                raise DataError("needs type, object and frame", field=f"events[{k}]", **where)
        if not isinstance(row.get("video"), str) and not isinstance(row.get("frames"), str):
            raise DataError("needs a video file or a frames folder", field="video", **where)
        clips.append(row)
    if not clips:
        raise DataError("no clips in this split", file=path)
    return clips


def video_ref(clip: dict[str, Any]) -> dict[str, Any]:
    """The clip as the agreed video reference (its mp4 with every frame, or its frame files in order)."""
    n = len(clip["per_frame"])
    if isinstance(clip.get("video"), str):
        return {"path": clip["video"], "sampling": {"mode": "uniform", "num_frames": n, "max_frames": n}}
    return {"frames": [f"{clip['frames']}/{i:03d}.png" for i in range(n)]}


_HAS_VIDEOS = any(f.name == "videos" for f in dataclasses.fields(EvalItem))


def video_item(
    clip: dict[str, Any], item_id: str, task: str, question: str, answer: str, meta: dict[str, Any]
) -> EvalItem:
    """An item over the clip (``objects``: every object present at some time); the video reference goes in
    ``videos`` (in ``meta.videos`` until records have it)."""
    meta = {"clip_id": clip["id"], "group": clip["id"], **meta}
    objects = sorted(union(clip))
    if _HAS_VIDEOS:  # parsed and checked as a record's videos are
        row = {"id": item_id, "task": task, "question": question, "answer": answer, "objects": objects}
        return record_from_dict({**row, "meta": meta, "videos": [video_ref(clip)]}, kind="eval")  # type: ignore[return-value]
    return EvalItem(item_id, task, question, answer, objects=objects, meta={**meta, "videos": [video_ref(clip)]})


def union(clip: dict[str, Any]) -> set[str]:
    return {name for frame in clip["per_frame"] for name in frame}


def candidates(world_dir: Path, clips: list[dict[str, Any]]) -> list[str]:
    """Object types to draw absent objects from: the world's (``world.json``) or every one the split shows."""
    path = world_dir / "world.json"
    if path.is_file():
        from mmalign.data.io import read_json

        objects = read_json(path).get("objects")
        if isinstance(objects, list) and objects:
            return sorted(str(o) for o in objects)
    return sorted({name for clip in clips for name in union(clip)})


def _pair(clip: dict[str, Any], subtask: str, basic: str, hallucinated: str) -> list[EvalItem]:
    return [
        video_item(
            clip,
            f"{clip['id']}-vh-{subtask}-{role}",
            "video_hallucer",
            question,
            answer,
            meta={"pair_id": f"{clip['id']}/{subtask}", "role": role, "subtask": subtask},
        )
        for role, question, answer in (("basic", basic, "yes"), ("hallucination", hallucinated, "no"))
    ]


def _temporal(events: list[dict[str, Any]]) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """Two event kinds (type, object) where every one of the first comes before every one of the second."""
    frames: dict[tuple[str, str], list[int]] = {}
    for e in events:
        frames.setdefault((e["type"], e["object"]), []).append(int(e["frame"]))
    kinds = list(frames)
    for a in kinds:
        for b in kinds:
            if a[1] != b[1] and max(frames[a]) < min(frames[b]):
                return a, b
    return None


def _same_object(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each name an object had in the clip → all its names (a colour change renames ``blue star`` to ``green star``)."""
    names: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == "change_colour" and "to" in e and " " in str(e["object"]):
            new = f"{e['to']} {str(e['object']).split(' ', 1)[1]}"
            group = names.get(e["object"], {e["object"]}) | names.get(new, {new})
            for name in group:
                names[name] = group
    return names


def hallucer_items(clip: dict[str, Any], objects: list[str]) -> list[EvalItem]:
    rng = random.Random(f"{clip['id']}:video_hallucer")
    present = sorted(union(clip))
    absent = [o for o in objects if o not in present]
    items: list[EvalItem] = []
    if present and absent:
        shown, never = rng.choice(present), rng.choice(absent)
        ask = "Does {} {} appear in the video?"
        items += _pair(
            clip, "existence", ask.format(shapes.article(shown), shown), ask.format(shapes.article(never), never)
        )
    order = _temporal(clip["events"])
    if order is not None:
        (t1, o1), (t2, o2) = order
        ask = "Does the {} {} before the {} {}?"
        items += _pair(
            clip,
            "temporal",
            ask.format(o1, BASE_VERB[t1], o2, THIRD_PERSON[t2]),
            ask.format(o2, BASE_VERB[t2], o1, THIRD_PERSON[t1]),
        )
    n, most = len(present), max(len(set(f)) for f in clip["per_frame"])
    wrong = most if most != n else n + 1
    if n < len(shapes.NUMBER_WORDS) and wrong < len(shapes.NUMBER_WORDS):
        ask = "Are there {} kinds of object in the video altogether?"
        items += _pair(clip, "count", ask.format(shapes.NUMBER_WORDS[n]), ask.format(shapes.NUMBER_WORDS[wrong]))
    happened = {(e["type"], e["object"]) for e in clip["events"] if e["type"] in EVENT_QUESTION}
    names = _same_object(clip["events"])

    def never(obj: str) -> list[str]:  # event types that happened to the object under none of its names
        return [u for u in EVENT_QUESTION if not any((u, name) in happened for name in names.get(obj, {obj}))]

    options = sorted((t, o) for t, o in happened if never(o))
    if options:
        kind, obj = rng.choice(options)
        other = rng.choice(never(obj))
        items += _pair(clip, "event", EVENT_QUESTION[kind].format(obj=obj), EVENT_QUESTION[other].format(obj=obj))
    return items


POPE_SCOPES = {
    "start": "Is there {a} {obj} at the start of the video?",
    "end": "Is there {a} {obj} at the end of the video?",
    "any": "Does {a} {obj} appear in the video?",
}


def pope_items(clip: dict[str, Any], objects: list[str]) -> list[EvalItem]:
    rng = random.Random(f"{clip['id']}:video_pope")
    seen = sorted(union(clip))
    items = []
    for scope, template in POPE_SCOPES.items():
        shown = set({"start": clip["per_frame"][0], "end": clip["per_frame"][-1], "any": seen}[scope])
        elsewhere = [o for o in seen if o not in shown]
        never = [o for o in objects if o not in seen]
        picks = []
        if shown:
            picks.append(("yes", rng.choice(sorted(shown)), None))
        if elsewhere or never:
            negative = "temporal" if elsewhere else "random"
            picks.append(("no", rng.choice(elsewhere or never), negative))
        for answer, obj, negative in picks:
            meta = {"scope": scope, "object": obj, **({"negative": negative} if negative else {})}
            question = template.format(a=shapes.article(obj), obj=obj)
            items.append(
                video_item(clip, f"{clip['id']}-vpope-{scope}-{answer}", "video_pope", question, answer, meta=meta)
            )
    return items


def chair_items(clip: dict[str, Any]) -> list[EvalItem]:
    events = [dict(e) for e in clip["events"]]
    return [
        video_item(
            clip,
            f"{clip['id']}-vchair",
            "video_chair",
            DESCRIBE_VIDEO,
            str(clip.get("caption", "")),
            meta={"events": events},
        )
    ]


def video_items(task: str, world_dir: Path, split: str) -> list[EvalItem]:
    """The items of one video task (:data:`VIDEO_TASKS`) over the split's clips, in clip order."""
    clips = read_clips(world_dir, split)
    objects = candidates(world_dir, clips)
    if task == "video_hallucer":
        return [item for clip in clips for item in hallucer_items(clip, objects)]
    if task == "video_pope":
        return [item for clip in clips for item in pope_items(clip, objects)]
    if task == "video_chair":
        return [item for clip in clips for item in chair_items(clip)]
    raise DataError(f"task {task!r} is not a video task ({', '.join(VIDEO_TASKS)})")
