"""``best-of-n``: sample n responses per prompt, keep the one a reward model rates highest, as an SFT record.

Best-of-n sampling (Stiennon et al., 2020; Nakano et al., 2021) and, trained on with ``mmalign train sft``,
rejection-sampling fine-tuning (RAFT, Dong et al., 2023; Llama 2's rejection sampling, Touvron et al., 2023).
Prompts are read as ``sample-rank`` reads them (a shapes world's scenes with ``prompt``, COCO-style annotations,
or a JSONL file of records: their prompt; evaluation items: their question), and the policy samples ``n``
responses per prompt with the model layer's seeded :func:`mmalign.models.generate`; distinct non-empty responses
are scored by the reward model (:class:`~mmalign.pairs.reward_scorer.RewardScorer`, batched over the unit) and
the highest reward wins (ties: the first sampled). With ``min_reward`` set, a prompt whose best reward is below
it yields no record (counted in :data:`STATS` as ``skipped:min_reward``; ``skipped:empty`` counts prompts whose
samples were all empty).

It is a strategy of the pair builders' machinery (:mod:`mmalign.pairs.shards`): units of ``prompts_per_unit``
prompts, each seeded by ``derive_seed(build seed, "best-of-n", unit id)``, written in resumable shards, so an
interrupted run resumes to the same bytes. ``mmalign rm best-of`` runs it; ``mmalign data build --strategy
best-of-n`` does too. With ``n=1`` the record holds exactly the plain seeded sample of the unit.

Each record's ``meta``: ``from_id``, ``reward`` (the chosen response's), ``candidates`` (every distinct sample:
``text``, ``count``, ``reward``), ``n``, ``sampling`` (temperature, top_p, max_new_tokens, batch_size, seed),
``model``, ``reward_model``, ``min_reward``; and ``objects`` when the prompt had ground truth.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from mmalign.config import option, section
from mmalign.data.records import SFTRecord, assistant
from mmalign.errors import ConfigError
from mmalign.objects import shapes
from mmalign.pairs.registry import Builder, BuildInputs, Plan
from mmalign.pairs.reward_scorer import RewardOptions, RewardScorer, check_reward_dir, reward_fingerprint
from mmalign.pairs.sample_rank import check_policy, model_fingerprint, policy_model, read_prompts, sample_candidates

log = logging.getLogger("mmalign.pairs.best_of")

STATS: Counter[str] = Counter()
"""This process's counts: ``prompts``, ``records`` and, per reason, skipped prompts (``skipped:<reason>``)."""


@dataclass(frozen=True)
class BestOfOptions:
    model: str = option("", "Policy model directory (local, safetensors) that samples the candidates. Required.")
    reward: RewardOptions = section(RewardOptions, "The reward model that rates the candidates (reward.path).")
    n: int = option(4, "Responses sampled per prompt (duplicates are merged before scoring).")
    temperature: float = option(1.0, "Sampling temperature.")
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    max_new_tokens: int = option(64, "Longest sampled response, in tokens.")
    batch_size: int = option(16, "Sequences generated together (a unit's prompts x n samples, in batches).")
    prompts_per_unit: int = option(8, "Prompts sampled together: the unit of batching, seeding and resume.")
    min_reward: float | None = option(
        None, "Leave out prompts whose best reward is below this (counted); null: keep every prompt's best."
    )
    prompt: str = option(shapes.DESCRIBE_PROMPT, "The question asked about each image (world and COCO inputs).")
    limit: int | None = option(None, "Use only the first N prompts of the input (null: all of them).")
    image_prefix: str = option("", "COCO-style input: prefix joined to each file_name to form the image path.")
    dtype: str = option("float32", "Dtype of the policy and the reward model: float32, bfloat16, float16.")
    device: str | None = option(None, "Device of the models (cpu, cuda...); null: where transformers puts them.")

    def __post_init__(self) -> None:
        for name in ("n", "max_new_tokens", "batch_size", "prompts_per_unit", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"option {name!r} must be at least 1, got {getattr(self, name)}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("sampling needs temperature > 0 and 0 < top_p <= 1")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"option 'dtype' must be float32, bfloat16 or float16, got {self.dtype!r}")


def pick_best(rewards: list[float]) -> int:
    """The index of the highest reward; ties: the earliest."""
    return max(range(len(rewards)), key=lambda i: (rewards[i], -i))


class BestOfBuilder(Builder):
    name: ClassVar[str] = "best-of-n"
    options_class: ClassVar[type] = BestOfOptions
    unit_name: ClassVar[str] = "prompt groups"
    record_kind: ClassVar[str] = "sft"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        opts = self.options
        fingerprint = hashlib.sha256(model_fingerprint(check_policy(opts.model, self.name)).encode())
        fingerprint.update(reward_fingerprint(check_reward_dir(opts.reward.path)).encode())
        prompts, root, inputs_print, what, _ = read_prompts(inputs, opts.prompt, opts.image_prefix, strategy=self.name)
        if opts.limit is not None and opts.limit < len(prompts):
            prompts, what = prompts[: opts.limit], f"the first {opts.limit} of {what}"
        fingerprint.update(inputs_print.encode())
        size = opts.prompts_per_unit
        units = [{"id": f"bo-{i // size:06d}", "prompts": prompts[i : i + size]} for i in range(0, len(prompts), size)]
        return Plan(units, root, fingerprint.hexdigest(), {"root": str(root)}, f"{what}, {len(units)} groups of {size}")

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[SFTRecord]:
        opts = self.options
        loaded = policy_model(opts.model, opts.dtype, opts.device)
        prompts = unit["prompts"]
        contexts, candidates = sample_candidates(loaded, prompts, shared["root"], opts, opts.n, seed)
        ready = [i for i, (texts_i, _) in enumerate(candidates) if texts_i]
        scorer = RewardScorer(opts.reward, opts.dtype, opts.device)
        scored = scorer.score_many([(candidates[i][0], contexts[i]) for i in ready]) if ready else []
        rewards: dict[int, list[float]] = dict(zip(ready, scored, strict=True))
        sampling = {
            "temperature": opts.temperature,
            "top_p": opts.top_p,
            "max_new_tokens": opts.max_new_tokens,
            "batch_size": opts.batch_size,
            "seed": seed,
        }
        out = []
        STATS["prompts"] += len(prompts)
        for i, p in enumerate(prompts):
            if i not in rewards:
                STATS["skipped:empty"] += 1
                log.info("best-of-n: every sample for %s was empty", p["id"])
                continue
            texts_i, counts = candidates[i]
            best = pick_best(rewards[i])
            if opts.min_reward is not None and rewards[i][best] < opts.min_reward:
                STATS["skipped:min_reward"] += 1
                log.info("best-of-n: best reward %.4f for %s is below min_reward", rewards[i][best], p["id"])
                continue
            meta: dict[str, Any] = {
                "from_id": p["id"],
                "reward": rewards[i][best],
                "candidates": [
                    {"text": t, "count": c, "reward": r} for t, c, r in zip(texts_i, counts, rewards[i], strict=True)
                ],
                "n": opts.n,
                "sampling": sampling,
                "model": opts.model,
                "reward_model": opts.reward.path,
                "min_reward": opts.min_reward,
            }
            if p["objects"] is not None:
                meta["objects"] = p["objects"]
            completion = assistant(texts_i[best])
            out.append(SFTRecord(f"{p['id']}-bo", p["prompt"], completion, list(p["images"]), self.name, meta))
        STATS["records"] += len(out)
        return out
