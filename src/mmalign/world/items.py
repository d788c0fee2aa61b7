"""Records built from scenes: ground-truth rows, SFT examples (train) and evaluation items (val/test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmalign.data.records import EvalItem, SFTRecord, assistant, user_prompt
from mmalign.objects import shapes
from mmalign.world.config import WorldConfig
from mmalign.world.draw import object_box
from mmalign.world.scene import Scene, SceneObject, absent_partners, object_types, partner_of, pick, sample, scene_rng
from mmalign.world.stats import CooccurrenceStats
from mmalign.world.text import (
    QA,
    colour_qa,
    count_qa,
    existence_qa,
    mc_qa,
    mme_pair,
    noisy_caption,
    position_qa,
    reference_caption,
    training_qa,
    unique_shapes,
)

POPE_STRATEGIES: tuple[str, ...] = ("random", "popular", "adversarial")
EVAL_TASKS: tuple[str, ...] = (
    *(f"pope_{s}" for s in POPE_STRATEGIES),
    "caption",
    "count",
    "colour",
    "position",
    "mc",
    "mme",
)
"""Evaluation files written for val and test: ``<split>/<task>.jsonl``."""


def image_path(scene: Scene) -> str:
    """Where a scene's image lives, relative to the world directory: ``images/val/000012.png``."""
    split, index = scene.id.split("-", 1)
    return f"images/{split}/{index}.png"


@dataclass
class TrainCaption:
    """The caption a training scene is taught with, and whether caption noise changed it."""

    text: str
    clean: str
    eligible: bool
    """The scene has an absent partner (so noise could apply)."""
    named_absent: list[str]
    """Absent partners the caption names (empty when clean)."""

    @property
    def noisy(self) -> bool:
        return bool(self.named_absent)


def train_caption(scene: Scene, cfg: WorldConfig) -> TrainCaption:
    """With probability ``caption_noise``, a scene with an absent partner gets a caption naming it."""
    clean = reference_caption(scene, cfg)
    eligible = bool(absent_partners(scene, cfg))
    rng = scene_rng(cfg, scene.id, "noise")
    if eligible and rng.random() < cfg.caption_noise:
        text, named = noisy_caption(scene, cfg, rng)
        return TrainCaption(text, clean, True, named)
    return TrainCaption(clean, clean, eligible, [])


def _object_row(scene: Scene, obj: SceneObject) -> dict[str, Any]:
    return {
        "name": obj.name,
        "colour": obj.colour,
        "shape": obj.shape,
        "size": obj.size,
        "row": obj.row,
        "col": obj.col,
        "position": scene.position(obj),
        "dx": obj.dx,
        "dy": obj.dy,
        "box": object_box(scene, obj),
        "via": obj.via,
    }


def scene_row(scene: Scene, cfg: WorldConfig, caption: TrainCaption | None = None) -> dict[str, Any]:
    """Ground truth of one scene, as written to ``<split>/scenes.jsonl``."""
    partners = partner_of(cfg)
    present = list(scene.names)
    row: dict[str, Any] = {
        "id": scene.id,
        "image": image_path(scene),
        "rows": scene.rows,
        "cols": scene.cols,
        "objects": [_object_row(scene, o) for o in scene.objects],
        "present": present,
        "absent_partners": absent_partners(scene, cfg),
        "partner_pairs_present": sorted(
            {tuple(sorted((a, partners[a]))) for a in present if partners.get(a) in present}
        ),
        "caption": reference_caption(scene, cfg),
        "key": scene.key(),
        "partner_trials": scene.partner_trials,
        "partner_added": scene.partner_added,
    }
    if caption is not None:
        row["train_caption"] = caption.text
        row["caption_noisy"] = caption.noisy
        row["named_absent"] = caption.named_absent
    return row


def scene_from_row(row: dict[str, Any]) -> Scene:
    """Rebuild a :class:`Scene` from its ``scenes.jsonl`` row (e.g. to re-render it with an object removed)."""
    objects = tuple(
        SceneObject(o["colour"], o["shape"], o["size"], o["row"], o["col"], o["dx"], o["dy"], o.get("via", "draw"))
        for o in row["objects"]
    )
    trials, added = row.get("partner_trials", 0), row.get("partner_added", 0)
    return Scene(row["id"], row["rows"], row["cols"], objects, trials, added)


# ---------------------------------------------------------------------------------------------- train


def _sft(record_id: str, scene: Scene, question: str, answer: str, source: str, meta: dict[str, Any]) -> SFTRecord:
    return SFTRecord(
        id=record_id,
        prompt=user_prompt(question),
        completion=assistant(answer),
        images=[image_path(scene)],
        source=source,
        meta={"scene_id": scene.id, **meta},
    )


def train_records(scene: Scene, cfg: WorldConfig, caption: TrainCaption) -> tuple[list[SFTRecord], SFTRecord]:
    """SFT records of one training scene (its caption, noisy or not, then ``qa_per_scene`` clean questions),
    and the clean-caption record with the same id (for preference builders)."""
    objects = list(scene.names)
    cap_meta = {"task": "caption", "objects": objects, "noisy": caption.noisy, "named_absent": caption.named_absent}
    records = [_sft(f"{scene.id}-caption", scene, shapes.DESCRIBE_PROMPT, caption.text, "world", cap_meta)]
    for j, qa in enumerate(training_qa(scene, cfg, scene_rng(cfg, scene.id, "qa"), cfg.qa_per_scene)):
        meta = {"task": qa.task, "short": qa.short, **qa.meta}
        records.append(_sft(f"{scene.id}-qa{j}", scene, qa.question, qa.answer, "world", meta))
    clean_meta = {"task": "caption", "objects": objects}
    clean = _sft(f"{scene.id}-caption", scene, shapes.DESCRIBE_PROMPT, caption.clean, "world-clean", clean_meta)
    return records, clean


# ----------------------------------------------------------------------------------------------- eval


def _item(scene: Scene, task: str, j: int, qa: QA, meta: dict[str, Any] | None = None) -> EvalItem:
    return EvalItem(
        id=f"{scene.id}-{task}-{j}",
        task=task,
        question=qa.question,
        answer=qa.short,
        images=[image_path(scene)],
        objects=list(scene.names),
        choices=qa.choices,
        meta={"scene_id": scene.id, **qa.meta, **(meta or {})},
    )


def pope_items(scene: Scene, cfg: WorldConfig, stats: CooccurrenceStats) -> dict[str, list[EvalItem]]:
    """POPE: k present objects (the same for every strategy) and k absent ones per strategy, alternating
    yes/no; k = min(pope_k, objects present). ``meta.absent_partner`` marks absent partners of present objects."""
    present = list(scene.names)
    absent = [t for t in object_types(cfg) if t not in present]
    k = min(cfg.pope_k, len(present), len(absent))
    positives = sample(scene_rng(cfg, scene.id, "pope"), present, k)
    absent_partner = set(absent_partners(scene, cfg))
    negatives = {
        "random": sample(scene_rng(cfg, scene.id, "pope_random"), absent, k),
        "popular": stats.popular_absent(present)[:k],
        "adversarial": stats.adversarial_absent(present)[:k],
    }
    out: dict[str, list[EvalItem]] = {}
    for strategy in POPE_STRATEGIES:
        task = f"pope_{strategy}"
        names = [n for pair in zip(positives, negatives[strategy], strict=True) for n in pair]
        out[task] = [
            _item(scene, task, j, existence_qa(scene, n), {"strategy": strategy, "absent_partner": n in absent_partner})
            for j, n in enumerate(names)
        ]
    return out


def eval_items(scene: Scene, cfg: WorldConfig, stats: CooccurrenceStats) -> dict[str, list[EvalItem]]:
    """Every evaluation item of one val/test scene, by task (see :data:`EVAL_TASKS`)."""
    rng = scene_rng(cfg, scene.id, "eval")
    out = pope_items(scene, cfg, stats)
    caption = QA(
        "caption",
        shapes.DESCRIBE_PROMPT,
        reference_caption(scene, cfg),
        reference_caption(scene, cfg),
        meta={"absent_partners": absent_partners(scene, cfg)},
    )
    out["caption"] = [_item(scene, "caption", 0, caption)]
    out["count"] = [
        _item(scene, "count", 0, count_qa(scene)),
        _item(scene, "count", 1, count_qa(scene, pick(rng, list(cfg.shapes)))),
    ]
    unique = unique_shapes(scene)
    out["colour"] = [_item(scene, "colour", 0, colour_qa(pick(rng, unique)))] if unique else []
    out["position"] = [_item(scene, "position", 0, position_qa(scene, pick(rng, list(scene.objects))))]
    out["mc"] = [_item(scene, "mc", 0, mc_qa(scene, cfg, rng, stats.adversarial_absent(scene.names)))]
    out["mme"] = [_item(scene, "mme", j, qa, {"group": scene.id}) for j, qa in enumerate(mme_pair(scene, cfg, rng))]
    return out
