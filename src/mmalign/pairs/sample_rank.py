"""``sample-rank``: sample k responses per prompt from the policy, score them, keep best vs worst.

The on-policy recipe of RLAIF-V (Yu et al., 2024), Silkie (Li et al., 2023), CLIP-DPO (Ouali et al., 2024)
and SIMA (Wang et al., 2024): the model answers each prompt ``k`` times with sampling, a scorer rates every
distinct answer (:mod:`mmalign.pairs.scorers`: ``truth``, ``clip``, ``self`` or ``judge``; ``reward``, a trained
reward model: :mod:`mmalign.pairs.reward_scorer`), and the
best and worst answers become chosen and rejected when their scores differ by at least ``min_gap``.

Prompts come from a shapes world (each scene with ``prompt``; ground truth: the scene's objects), from
COCO-style annotations (a directory or ``instances_*.json``; ground truth as CHAIR builds it: instance
categories plus the objects the reference captions name), or from a JSONL file of records (SFT or
preference records: their prompt; evaluation items: their question; ground truth: an item's ``objects`` or
``meta.objects``).

A unit is a group of ``prompts_per_unit`` prompts: its ``k`` samples of every prompt go through the model
layer's batched :func:`mmalign.models.generate` together, seeded by the unit's seed, so the output is the same
for a seed whatever the shards, processes or interruptions (it does depend on ``prompts_per_unit`` and
``batch_size``, which are options and so part of the build's manifest). The policy (and a CLIP model, a
judge client) is loaded once per process. Run model-based builds with one process (the default): each
process would load its own copy and torch already uses every core.

A prompt yields no pair when fewer than two distinct non-empty answers were sampled, fewer than two could
be scored, or the best-worst gap is below ``min_gap``; such prompts are logged and counted in
:data:`STATS` (the build's pair count against its prompt count also tells how many). Each record's meta
holds every distinct candidate with its count and score, the scorer and its options, and the sampling
settings.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from mmalign.config import option, section
from mmalign.data.records import EvalItem, PreferenceRecord, assistant, prompt_text, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.objects import shapes
from mmalign.pairs.registry import Builder, BuildInputs, Plan, file_fingerprint
from mmalign.pairs.reward_scorer import DEFAULT_MIN_GAP, RewardOptions, check_reward_dir, reward_fingerprint
from mmalign.pairs.scorers import (
    SCORER_NAMES,
    ClipOptions,
    JudgeOptions,
    ScoreContext,
    Scorer,
    SelfOptions,
    TruthOptions,
    cached,
    check_clip_dir,
)

log = logging.getLogger("mmalign.pairs.sample_rank")

STATS: Counter[str] = Counter()
"""This process's counts: ``prompts``, ``pairs`` and, per reason, skipped prompts (``skipped:<reason>``)."""


@dataclass(frozen=True)
class SampleRankOptions:
    model: str = option("", "Policy model directory (local, safetensors) that samples the candidates. Required.")
    scorer: str = option("truth", f"How candidates are scored: {', '.join(SCORER_NAMES)} (options in its section).")
    k: int = option(4, "Responses sampled per prompt (duplicates are merged before scoring).")
    temperature: float = option(1.0, "Sampling temperature.")
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    max_new_tokens: int = option(64, "Longest sampled response, in tokens.")
    batch_size: int = option(16, "Sequences generated together (a unit's prompts x k samples, in batches).")
    prompts_per_unit: int = option(8, "Prompts sampled together: the unit of batching, seeding and resume.")
    min_gap: float | None = option(
        None,
        "Smallest best-worst score gap that makes a pair; null: the scorer's default (truth 0.1, clip "
        f"0.01, self 0.05, judge 1, reward {DEFAULT_MIN_GAP}).",
    )
    prompt: str = option(shapes.DESCRIBE_PROMPT, "The question asked about each image (world and COCO inputs).")
    limit: int | None = option(None, "Use only the first N prompts of the input (null: all of them).")
    image_prefix: str = option("", "COCO-style input: prefix joined to each file_name to form the image path.")
    dtype: str = option(
        "float32", "Dtype of the policy (and of the self and reward scorers): float32, bfloat16, float16."
    )
    device: str | None = option(None, "Device of the models (cpu, cuda...); null: where transformers puts them.")
    truth: TruthOptions = section(TruthOptions, "Options of the truth scorer.")
    clip: ClipOptions = section(ClipOptions, "Options of the clip scorer.")
    self_judge: SelfOptions = section(SelfOptions, "Options of the self scorer (the policy judges itself).")
    judge: JudgeOptions = section(JudgeOptions, "Options of the judge scorer (an OpenAI-compatible API).")
    reward: RewardOptions = section(RewardOptions, "Options of the reward scorer (a reward model: mmalign train rm).")

    def __post_init__(self) -> None:
        if self.scorer not in SCORER_NAMES:
            raise ConfigError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORER_NAMES)}")
        if self.k < 2:
            raise ConfigError(f"option 'k' must be at least 2 (a pair needs two answers), got {self.k}")
        for name in ("max_new_tokens", "batch_size", "prompts_per_unit", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"option {name!r} must be at least 1, got {getattr(self, name)}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("sampling needs temperature > 0 and 0 < top_p <= 1")
        if self.min_gap is not None and self.min_gap < 0:
            raise ConfigError(f"option 'min_gap' must be >= 0, got {self.min_gap}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"option 'dtype' must be float32, bfloat16 or float16, got {self.dtype!r}")


# ------------------------------------------------------------------------------------------- the policy


def model_fingerprint(path: Path) -> str:
    """A cheap identity of a model directory: its config and the names and sizes of its weight files."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()


def check_policy(path: str, strategy: str) -> Path:
    """The policy directory, checked before any unit runs (ConfigError when missing or not loadable)."""
    from mmalign.models.loading import check_model_dir

    if not path:
        raise ConfigError(f"{strategy} needs a policy model: -o model=DIR (a local model directory)")
    check_model_dir(Path(path))
    return Path(path)


def policy_model(path: str, dtype: str, device: str | None) -> Any:
    """The loaded policy (:class:`mmalign.models.LoadedModel`), once per process."""
    from mmalign.models.loading import load

    return cached(("policy", str(Path(path).resolve()), dtype, device), lambda: load(path, dtype=dtype, device=device))


# ---------------------------------------------------------------------------------------------- prompts


def read_prompts(
    inputs: BuildInputs,
    question: str,
    image_prefix: str = "",
    need_objects: bool = False,
    strategy: str = "sample-rank",
) -> tuple[list[dict[str, Any]], Path, str, str, str]:
    """Prompts as dicts (id, prompt, images, question, objects), the data root, a fingerprint of the inputs,
    a description and the object vocabulary (shapes or coco) their ground truth is in. ``question`` is asked of
    each world scene or COCO image; records bring their own prompt (``need_objects``: each must also bring its
    ground-truth objects)."""
    from mmalign.pairs.sources import read_world_split

    if inputs.world is not None:
        world = read_world_split(inputs, strategy)
        prompts = [_prompt(row["id"], question, [row["image"]], list(row["present"])) for row in world.rows]
        return prompts, world.root, world.fingerprint, f"{len(prompts)} prompts of {world.description}", "shapes"
    if inputs.input is None:
        raise ConfigError(f"{strategy} needs --world DIR, or --input (records .jsonl or COCO-style annotations)")
    path = Path(inputs.input)
    root = Path(inputs.root) if inputs.root is not None else path.resolve().parent
    if path.is_dir() or path.name.startswith("instances_"):
        from mmalign.data.coco import read_coco
        from mmalign.objects.mentions import objects_in
        from mmalign.objects.vocabulary import coco_vocabulary

        coco, names = read_coco(path, image_prefix), coco_vocabulary()
        prompts = []
        for unit in coco.units:  # CHAIR's ground truth: instance categories and the objects captions name
            truth = {names.synonyms.get(o, o) for o in unit["objects"]}
            truth |= {o for caption in unit["captions"] for o in objects_in(caption, names)}
            prompts.append(_prompt(unit["id"], question, [unit["image"]], sorted(truth)))
        return prompts, root, file_fingerprint(*coco.files), f"{len(prompts)} images of {path}", "coco"
    if path.suffix.lower() != ".jsonl":
        raise ConfigError(f"{strategy} reads JSONL records or COCO-style annotations, not {path.name!r}")
    return _record_prompts(path, root, need_objects)


def _prompt(pid: str, question: str, images: list[str], objects: list[str] | None) -> dict[str, Any]:
    return {
        "id": pid,
        "prompt": user_prompt(question, len(images)),
        "images": images,
        "question": question,
        "objects": objects,
    }


def _record_prompts(path: Path, root: Path, need_objects: bool) -> tuple[Any, Path, str, str, str]:
    from mmalign.data.io import iter_rows, parse_row
    from mmalign.objects.vocabulary import shapes_vocabulary

    prompts, seen = [], set()
    for row in iter_rows(path):
        record = parse_row(row, file=path)
        if record.id in seen:
            raise DataError(
                "duplicate record id: prompts need unique ids", file=path, line=row.line, record_id=record.id
            )
        seen.add(record.id)
        if any(not isinstance(ref, str) for ref in record.images):
            raise DataError("images must be file paths", file=path, line=row.line, record_id=record.id, field="images")
        if isinstance(record, EvalItem):
            prompt, objects = user_prompt(record.question, len(record.images)), list(record.objects)
        else:
            prompt, objects = record.prompt, record.meta.get("objects")
            if not (isinstance(objects, list) and all(isinstance(o, str) for o in objects)):
                objects = None
        prompts.append(
            {
                "id": record.id,
                "prompt": prompt,
                "images": list(record.images),
                "question": prompt_text(prompt),
                "objects": objects,
            }
        )
    if need_objects:
        for p in prompts:
            if p["objects"] is None:
                raise DataError(
                    "the truth scorer needs ground-truth objects (an evaluation item's 'objects' or meta.objects)",
                    file=path,
                    record_id=p["id"],
                    field="objects",
                )
    shapes = set(shapes_vocabulary().synonyms)
    known = all(o in shapes for p in prompts for o in p["objects"] or [])
    return prompts, root, file_fingerprint(path), f"{len(prompts)} prompts of {path}", "shapes" if known else "coco"


# ---------------------------------------------------------------------------------------------- ranking


def sample_candidates(
    loaded: Any, prompts: list[dict[str, Any]], root: str, opts: Any, k: int, seed: int
) -> tuple[list[ScoreContext], list[tuple[list[str], list[int]]]]:
    """Each prompt's context (its images opened) and its ``k`` seeded samples, deduplicated (:func:`dedupe`):
    what ``sample-rank`` ranks and ``best-of-n`` picks from. ``opts`` carries the sampling options
    (``max_new_tokens``, ``temperature``, ``top_p``, ``batch_size``)."""
    from mmalign.data.images import load_images
    from mmalign.models.examples import Example
    from mmalign.models.generation import generate

    contexts = []
    for p in prompts:
        images = load_images(p["images"], root, record_id=p["id"])
        contexts.append(ScoreContext(p["id"], p["question"], p["prompt"], images, p["objects"]))
    items = [Example(c.id, c.prompt, c.images) for c in contexts for _ in range(k)]
    texts = generate(
        loaded,
        items,
        max_new_tokens=opts.max_new_tokens,
        do_sample=True,
        temperature=opts.temperature,
        top_p=opts.top_p,
        batch_size=opts.batch_size,
        seed=seed,
    )
    return contexts, [dedupe(texts[i * k : (i + 1) * k]) for i in range(len(prompts))]


def dedupe(samples: list[str]) -> tuple[list[str], list[int]]:
    """Distinct non-empty answers in first-seen order, and how often each was sampled."""
    counts: dict[str, int] = {}
    for text in samples:
        if text.strip():
            counts[text] = counts.get(text, 0) + 1
    return list(counts), list(counts.values())


def pick_pair(scores: list[float], min_gap: float) -> tuple[int, int] | str:
    """(best, worst) candidate indices, or why there is no pair. Ties: the earliest candidate is best and
    the latest is worst; ``nan`` scores are ignored; the gap must be positive and at least ``min_gap``."""
    scored = [i for i, s in enumerate(scores) if not math.isnan(s)]
    if len(scored) < 2:
        return "unscored"
    best = max(scored, key=lambda i: (scores[i], -i))
    worst = min(scored, key=lambda i: (scores[i], -i))
    gap = scores[best] - scores[worst]
    if gap <= 0 or gap < min_gap - 1e-9:  # 0.6 - 0.5 is 0.0999...: a gap equal to min_gap up to rounding counts
        return "gap"
    return best, worst


# ---------------------------------------------------------------------------------------------- builder


class SampleRankBuilder(Builder):
    name: ClassVar[str] = "sample-rank"
    options_class: ClassVar[type] = SampleRankOptions
    unit_name: ClassVar[str] = "prompt groups"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        opts = self.options
        model = check_policy(opts.model, self.name)
        fingerprint = hashlib.sha256(model_fingerprint(model).encode())
        if opts.scorer == "clip":
            fingerprint.update(model_fingerprint(check_clip_dir(opts.clip.path)).encode())
        if opts.scorer == "reward":
            fingerprint.update(reward_fingerprint(check_reward_dir(opts.reward.path)).encode())
        if opts.scorer == "judge" and not opts.judge.model:
            raise ConfigError("the judge scorer needs judge.model (and judge.base_url for a server other than OpenAI)")
        prompts, root, inputs_print, what, vocabulary = read_prompts(
            inputs, opts.prompt, opts.image_prefix, need_objects=opts.scorer == "truth"
        )
        if opts.limit is not None and opts.limit < len(prompts):
            prompts, what = prompts[: opts.limit], f"the first {opts.limit} of {what}"
        fingerprint.update(inputs_print.encode())
        if opts.truth.vocabulary != "auto":
            vocabulary = opts.truth.vocabulary
        size = opts.prompts_per_unit
        units = [{"id": f"sr-{i // size:06d}", "prompts": prompts[i : i + size]} for i in range(0, len(prompts), size)]
        shared = {"root": str(root), "vocabulary": vocabulary}
        return Plan(units, root, fingerprint.hexdigest(), shared, f"{what}, {len(units)} groups of {size}")

    def make_scorer(self, shared: dict[str, Any], loaded: Any) -> Scorer:
        """The configured scorer (its models and clients come from the per-process cache)."""
        from mmalign.pairs import scorers
        from mmalign.pairs.reward_scorer import RewardScorer

        opts = self.options
        if opts.scorer == "truth":
            return scorers.TruthScorer(opts.truth, shared["vocabulary"])
        if opts.scorer == "clip":
            return scorers.ClipScorer(opts.clip, opts.device)
        if opts.scorer == "self":
            return scorers.SelfScorer(opts.self_judge, loaded)
        if opts.scorer == "reward":
            return RewardScorer(opts.reward, opts.dtype, opts.device)
        return scorers.JudgeScorer(opts.judge, Path(shared["root"]))

    def scorer_options(self, shared: dict[str, Any]) -> dict[str, Any]:
        opts = self.options
        if opts.scorer == "truth":
            return {**asdict(opts.truth), "vocabulary": shared["vocabulary"]}
        if opts.scorer == "clip":
            return {"path": opts.clip.path}
        if opts.scorer == "self":
            return asdict(opts.self_judge)
        if opts.scorer == "reward":
            return asdict(opts.reward)
        return opts.judge.described()

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        opts = self.options
        loaded = policy_model(opts.model, opts.dtype, opts.device)
        prompts = unit["prompts"]
        contexts, candidates = sample_candidates(loaded, prompts, shared["root"], opts, opts.k, seed)
        sampling = {
            "k": opts.k,
            "temperature": opts.temperature,
            "top_p": opts.top_p,
            "max_new_tokens": opts.max_new_tokens,
            "batch_size": opts.batch_size,
            "seed": seed,
        }
        ready = [i for i, (texts_i, _) in enumerate(candidates) if len(texts_i) >= 2]
        scorer = self.make_scorer(shared, loaded)
        scored = scorer.score_many([(candidates[i][0], contexts[i]) for i in ready]) if ready else []
        scores: dict[int, list[float]] = dict(zip(ready, scored, strict=True))
        min_gap = scorer.default_min_gap if opts.min_gap is None else opts.min_gap
        described = self.scorer_options(shared)
        out = []
        STATS["prompts"] += len(prompts)
        for i, p in enumerate(prompts):
            texts_i, counts = candidates[i]
            picked = pick_pair(scores[i], min_gap) if i in scores else "duplicates"
            if isinstance(picked, str):
                STATS[f"skipped:{picked}"] += 1
                log.info("sample-rank: no pair for %s (%s)", p["id"], picked)
                continue
            best, worst = picked
            row_scores = scores[i]
            meta = {
                "from_id": p["id"],
                "scorer": opts.scorer,
                "scorer_options": described,
                "min_gap": min_gap,
                "chosen_score": row_scores[best],
                "rejected_score": row_scores[worst],
                "gap": row_scores[best] - row_scores[worst],
                "candidates": [
                    {"text": t, "count": n, "score": None if math.isnan(s) else s}
                    for t, n, s in zip(texts_i, counts, row_scores, strict=True)
                ],
                "sampling": sampling,
                "model": opts.model,
            }
            if p["objects"] is not None:
                meta["objects"] = p["objects"]
            out.append(
                PreferenceRecord(
                    id=f"{p['id']}-sr",
                    prompt=p["prompt"],
                    chosen=assistant(texts_i[best]),
                    rejected=assistant(texts_i[worst]),
                    images=list(p["images"]),
                    source=f"{self.name}/{opts.scorer}",
                    meta=meta,
                )
            )
        STATS["pairs"] += len(out)
        return out
