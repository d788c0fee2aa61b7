"""How ``sample-rank`` scores a prompt's candidate responses: five scorers, each usable alone.

Each scorer is a small class with ``score(candidates, context) -> list[float]`` (higher is better) and a
batched ``score_many`` that the builder calls once per unit of prompts:

* ``truth``: object precision / recall / F1 of a response against the image's ground-truth objects, with
  CHAIR's object extraction (Rohrbach et al., 2018): :func:`mmalign.objects.mentions.count_mentions`, which
  CHAIR counts with too, so a pair ranked by ``truth`` is ranked the way CHAIR will judge it.
* ``clip``: image-text cosine similarity from a local CLIP model (CLIP-DPO, Ouali et al., 2024).
* ``self``: the policy judges its own candidates (SIMA, Wang et al., 2024): a judging prompt with the
  candidate asks for yes or no, and the score is P(yes) / (P(yes) + P(no)) from the policy's log-probs
  of the two answers (see :class:`SelfScorer`).
* ``judge``: an external model behind an OpenAI-compatible API rates each candidate 1-10 with the Silkie /
  GPT-4V rubric (Li et al., 2023), through :func:`mmalign.judge.score_answers` (bounded concurrency,
  retries, a SQLite cache of every judgment).
* ``reward``: a reward model trained with ``mmalign train rm`` gives each candidate its reward
  (:mod:`mmalign.pairs.reward_scorer`, its own module).

A candidate a scorer could not score (an unreadable judge reply) gets ``nan`` and takes no part in ranking.
Models (policy, CLIP, reward model) and judge clients are loaded once per process and kept in :data:`_CACHE`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from mmalign.config import option
from mmalign.data.records import Message, assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.judge.client import JudgeConfig

SCORER_NAMES: tuple[str, ...] = ("truth", "clip", "self", "judge", "reward")
"""Every scorer; ``reward`` lives in :mod:`mmalign.pairs.reward_scorer`."""
VOCABULARIES: tuple[str, ...] = ("auto", "shapes", "coco")
DEFAULT_JUDGE_CACHE = "judge-cache.sqlite"

_CACHE: dict[tuple[Any, ...], Any] = {}
"""Loaded models and judge clients of this process, keyed by what they were loaded from."""


def cached(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """``make()`` once per process and ``key`` (a model is loaded once, not once per unit)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded models; close judge clients (their SQLite connections)."""
    for value in _CACHE.values():
        if hasattr(value, "close"):
            value.close()
    _CACHE.clear()


@dataclass
class ScoreContext:
    """What a scorer may look at besides the candidates: the prompt, its images, the ground truth."""

    id: str
    """The prompt's record id (named in errors)."""
    question: str
    """Text of the last user turn."""
    prompt: list[Message]
    images: list[Image.Image] = field(default_factory=list)
    objects: list[str] | None = None
    """Ground-truth objects of the image(s); None when unknown."""


class Scorer(ABC):
    name: ClassVar[str]
    default_min_gap: ClassVar[float]
    """Smallest best-worst score gap that makes a pair when ``min_gap`` is not set."""

    def score(self, candidates: list[str], context: ScoreContext) -> list[float]:
        """One score per candidate (higher is better; ``nan``: could not be scored)."""
        return self.score_many([(candidates, context)])[0]

    @abstractmethod
    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        """Scores of several prompts' candidates at once (batched where the scorer can)."""


# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class TruthOptions:
    metric: str = option(
        "f1",
        "f1, precision or recall. precision = mentions of present objects / all object mentions (1 - CHAIR-i; "
        "1 when nothing is mentioned); recall = distinct present objects mentioned / ground-truth objects "
        "(1 when there are none); f1 = their harmonic mean.",
    )
    vocabulary: str = option(
        "auto",
        "Object vocabulary: shapes (colour + shape), coco (CHAIR's 80 classes and synonyms) or auto (shapes for "
        "a world and for records whose objects are all shapes, coco otherwise).",
    )

    def __post_init__(self) -> None:
        if self.metric not in ("f1", "precision", "recall"):
            raise ConfigError(f"truth.metric must be f1, precision or recall, got {self.metric!r}")
        if self.vocabulary not in VOCABULARIES:
            raise ConfigError(f"truth.vocabulary must be one of {', '.join(VOCABULARIES)}, got {self.vocabulary!r}")


@dataclass(frozen=True)
class ClipOptions:
    path: str = option("", "Local CLIP model directory (CLIPModel + CLIPProcessor, safetensors). Needed for clip.")
    batch_size: int = option(64, "Candidate texts encoded per forward pass.")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"clip.batch_size must be at least 1, got {self.batch_size}")


DEFAULT_SELF_TEMPLATE = (
    "Question: {question}\nAnswer: {answer}\nIs everything this answer says about the image true? Answer yes or no."
)


@dataclass(frozen=True)
class SelfOptions:
    template: str = option(
        DEFAULT_SELF_TEMPLATE,
        "Judging prompt shown to the policy with the image(s); {answer} is the candidate, {question} the prompt.",
    )
    yes: str = option("Yes.", "The answer meaning 'the candidate is right' (its log-prob is compared with no's).")
    no: str = option("No.", "The answer meaning 'the candidate is wrong'.")
    batch_size: int = option(16, "Judging sequences per forward pass (two per candidate: yes and no).")

    def __post_init__(self) -> None:
        if "{answer}" not in self.template:
            raise ConfigError("self_judge.template must contain {answer} (where the candidate goes)")
        try:
            self.template.format(question="", answer="")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"self_judge.template: only {{question}} and {{answer}} may be used ({err})") from None
        if not self.yes.strip() or not self.no.strip() or self.yes == self.no:
            raise ConfigError("self_judge.yes and self_judge.no must be two different, non-empty answers")
        if self.batch_size < 1:
            raise ConfigError(f"self_judge.batch_size must be at least 1, got {self.batch_size}")


@dataclass
class JudgeOptions(JudgeConfig):
    """The judge's API settings (:class:`mmalign.judge.JudgeConfig`) and how candidates are shown to it."""

    cache_path: str | None = option(
        "",
        f"SQLite file keeping every judgment (a rerun never pays twice); empty: {DEFAULT_JUDGE_CACHE} in the "
        "build's data root; null: no cache (not advised).",
    )
    facts: bool = option(
        False,
        "Also give the judge the ground-truth objects as facts about the image (LLaVA-Bench style); "
        "off: the judge sees only the image, as in Silkie.",
    )

    def client_config(self, default_cache: Path) -> JudgeConfig:
        """The :class:`JudgeConfig` to call the judge with (an empty cache path becomes ``default_cache``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(JudgeConfig)}
        if values["cache_path"] == "":
            values["cache_path"] = str(default_cache)
        return JudgeConfig(**values)

    def described(self) -> dict[str, Any]:
        """What a record's meta says about the judge (no secret: the key is never in a config)."""
        keep = ("base_url", "model", "temperature", "max_tokens", "seed", "extra_body", "facts")
        return {name: getattr(self, name) for name in keep}


# ---------------------------------------------------------------------------------------------- scorers


class TruthScorer(Scorer):
    """Object precision / recall / F1 against ground truth, with CHAIR's extraction (see :class:`TruthOptions`).

    Worked example (shapes): truth {red circle, blue star}; "There is a red circle and a green square."
    mentions red circle (present) and green square (absent): precision 1/2, recall 1/2, F1 1/2.
    """

    name: ClassVar[str] = "truth"
    default_min_gap: ClassVar[float] = 0.1

    def __init__(self, options: TruthOptions, vocabulary: str) -> None:
        from mmalign.objects.vocabulary import coco_vocabulary, shapes_vocabulary

        if vocabulary not in ("shapes", "coco"):
            raise ConfigError(f"truth scorer: vocabulary must be resolved to shapes or coco, got {vocabulary!r}")
        self.metric = options.metric
        self.vocabulary = shapes_vocabulary() if vocabulary == "shapes" else coco_vocabulary()

    def precision_recall(self, candidate: str, objects: list[str]) -> tuple[float, float]:
        from mmalign.objects.mentions import count_mentions

        counts = count_mentions(candidate, objects, self.vocabulary)
        mentions, hallucinated = len(counts.mentions), len(counts.hallucinated)
        precision = 1.0 - hallucinated / mentions if mentions else 1.0
        recall = len(counts.recalled) / len(counts.truth) if counts.truth else 1.0
        return precision, recall

    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        out = []
        for candidates, context in groups:
            if context.objects is None:
                raise DataError(
                    "the truth scorer needs the image's ground-truth objects", record_id=context.id, field="objects"
                )
            truth = [self.vocabulary.synonyms.get(o, o) for o in context.objects]
            scores = []
            for candidate in candidates:
                p, r = self.precision_recall(candidate, truth)
                f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
                scores.append({"precision": p, "recall": r, "f1": f1}[self.metric])
            out.append(scores)
        return out


def check_clip_dir(path: str) -> Path:
    """A CLIP model directory: present, ``model_type: clip``, safetensors weights (ConfigError otherwise)."""
    from mmalign.models.loading import check_model_dir

    if not path:
        raise ConfigError("the clip scorer needs clip.path: a local CLIP model directory")
    directory = Path(path)
    config = check_model_dir(directory)
    if config.get("model_type") != "clip":
        raise ConfigError(f"{directory} holds a {config.get('model_type')!r} model, not CLIP (model_type 'clip')")
    return directory


class ClipScorer(Scorer):
    """Cosine similarity of each candidate's CLIP text embedding with the image embedding (mean over the
    prompt's images), as CLIP-DPO ranks candidates. Texts longer than CLIP's window are truncated."""

    name: ClassVar[str] = "clip"
    default_min_gap: ClassVar[float] = 0.01

    def __init__(self, options: ClipOptions, device: str | None = None) -> None:
        directory = check_clip_dir(options.path)
        self.batch_size = options.batch_size
        key = ("clip", str(directory.resolve()), device)
        self.model, self.processor = cached(key, lambda: _load_clip(directory, device))

    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        import torch

        device = next(self.model.parameters()).device
        max_length = self.model.config.text_config.max_position_embeddings
        out = []
        with torch.no_grad():
            for candidates, context in groups:
                if not context.images:
                    raise DataError("the clip scorer needs an image", record_id=context.id, field="images")
                pixels = self.processor(images=context.images, return_tensors="pt")["pixel_values"].to(device)
                image = self.model.get_image_features(pixel_values=pixels)
                image = _features(image)
                image = image / image.norm(dim=-1, keepdim=True)
                scores: list[float] = []
                for start in range(0, len(candidates), self.batch_size):
                    texts = candidates[start : start + self.batch_size]
                    enc = self.processor(
                        text=texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
                    ).to(device)
                    text = _features(self.model.get_text_features(**enc))
                    text = text / text.norm(dim=-1, keepdim=True)
                    scores += (text @ image.T).mean(-1).tolist()
                out.append(scores)
        return out


def _features(output: Any) -> Any:
    """Projected embeddings from ``get_*_features`` (a tensor, or an output holding ``pooler_output``)."""
    return output if hasattr(output, "norm") else output.pooler_output


def _load_clip(directory: Path, device: str | None) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    try:
        processor = CLIPProcessor.from_pretrained(directory)
        model = CLIPModel.from_pretrained(directory, use_safetensors=True)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{directory}: cannot load the CLIP model ({err})") from None
    return (model.to(device) if device else model).eval(), processor


class SelfScorer(Scorer):
    """The policy as its own judge (SIMA, Wang et al., 2024: the model critiques its sampled responses).

    For each candidate the policy sees its image(s) and ``template`` filled with the question and the
    candidate; with ``lp(a)`` the summed log-prob of answer ``a`` (as the chat template renders it, end of
    turn included), the score is ``sigmoid(lp(yes) - lp(no)) = P(yes) / (P(yes) + P(no))``: the probability
    of "yes" when the policy must choose between the two answers. Scores lie in (0, 1).
    """

    name: ClassVar[str] = "self"
    default_min_gap: ClassVar[float] = 0.05

    def __init__(self, options: SelfOptions, loaded: Any) -> None:
        self.options = options
        self.loaded = loaded

    def judging_prompt(self, candidate: str, context: ScoreContext) -> list[Message]:
        text = self.options.template.format(question=context.question, answer=candidate)
        return user_prompt(text, len(context.images))

    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        import torch

        from mmalign.models.examples import Example
        from mmalign.models.logps import sequence_logps

        examples = []
        for candidates, context in groups:
            for j, candidate in enumerate(candidates):
                prompt = self.judging_prompt(candidate, context)
                for answer in (self.options.yes, self.options.no):
                    examples.append(Example(f"{context.id}#{j}", prompt, list(context.images), assistant(answer)))
        collator = self.loaded.collator(mode="train")
        logps: list[float] = []
        with torch.no_grad():
            for start in range(0, len(examples), self.options.batch_size):
                batch = collator(examples[start : start + self.options.batch_size])
                logps += sequence_logps(self.loaded.model, batch).sum.tolist()
        out, i = [], 0
        for candidates, _ in groups:
            scores = []
            for _ in candidates:
                scores.append(_sigmoid(logps[i] - logps[i + 1]))
                i += 2
            out.append(scores)
        return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class JudgeScorer(Scorer):
    """An external judge rates each candidate 1-10 (Silkie's GPT-4V rubric, :func:`score_messages`); every
    candidate of a unit goes through one :func:`score_answers` call (shared concurrency and cache)."""

    name: ClassVar[str] = "judge"
    default_min_gap: ClassVar[float] = 1.0

    def __init__(self, options: JudgeOptions, data_root: Path) -> None:
        from mmalign.judge import JudgeClient

        config = options.client_config(data_root / DEFAULT_JUDGE_CACHE)
        self.facts = options.facts
        key = ("judge", repr(sorted(dataclasses.asdict(config).items())))
        self.client = cached(key, lambda: JudgeClient(config))

    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        from mmalign.judge import ScoreItem, score_answers

        items = []
        for candidates, context in groups:
            facts = None
            if self.facts and context.objects is not None:
                facts = "Objects in the image: " + (", ".join(context.objects) or "none")
            for j, candidate in enumerate(candidates):
                items.append(
                    ScoreItem(context.question, candidate, list(context.images), context=facts, id=f"{context.id}#{j}")
                )
        judgments = score_answers(self.client, items, desc="judging candidates")
        scores = [math.nan if j.score is None else float(j.score) for j in judgments]
        out, i = [], 0
        for candidates, _ in groups:
            out.append(scores[i : i + len(candidates)])
            i += len(candidates)
        return out
