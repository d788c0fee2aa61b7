"""``adversarial``: pairs on adversarially perturbed images: the correct answer over the model's wrong one.

AdPO (adversarial preference optimisation) and VLGuard-style robustness data start from an image with a
small perturbation that makes the policy answer wrongly. Here the perturbation is found by projected
gradient descent (PGD, Madry et al., 2018) under an L-infinity bound: starting from a random point of the
ball (``random_start``), ``steps`` signed-gradient steps of ``step_size`` raise the negative log-likelihood
of the correct answer, each step projected back into ``|delta| <= epsilon`` and into valid pixels; the
iterate with the highest NLL is kept. ``epsilon`` and ``step_size`` are in pixel units (out of 255).

Where the attack happens: on the image exactly as the model sees it. The processor's ``pixel_values``
(llava family: the image padded to a square, resized, and normalised with CLIP's mean and std) are mapped
back to [0, 1] pixels, snapped to the uint8 grid, perturbed there and normalised again, so the gradient
flows through the normalisation. The perturbed image is then quantised to uint8 (the change clamped to
``floor(epsilon)`` levels, so ``max |png - clean| <= epsilon`` holds after quantisation) and written as a
PNG at the model's resolution (the processor reads it back unchanged). Everything after that uses the PNG
through the normal processor path: the NLL of the correct answer (``meta.nll_png``, next to ``nll_clean``
and the float attack's ``nll_attack``, so whether the attack survives quantisation is recorded), and the
model's greedy answer. A pair is kept when that answer is wrong: chosen = the correct answer, rejected =
the model's answer, both on the perturbed image. Models whose processor gives other pixel inputs (tiles,
patch sequences: qwen2-vl, idefics3) are refused with a ConfigError.

Answers match when, lower-cased with punctuation removed, the model's answer equals the correct one or
starts with it as a whole word ("yes, there is" matches "Yes."), the short-answer matching of the world.

Inputs: the world's training questions (``train/sft.jsonl``, tasks in ``tasks``), or a JSONL file of SFT
records (the completion is the correct answer), preference records (the chosen answer) or evaluation items
(the reference answer). Units are groups of ``items_per_unit`` questions attacked in one batch; each
question's random start has its own seed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from mmalign.config import option
from mmalign.data.records import (
    EvalItem,
    ImageBlob,
    PreferenceRecord,
    SFTRecord,
    assistant,
    response_text,
    user_prompt,
)
from mmalign.errors import ConfigError, DataError
from mmalign.pairs.registry import Builder, BuildInputs, Plan, file_fingerprint
from mmalign.pairs.sample_rank import check_policy, model_fingerprint, policy_model
from mmalign.seeding import derive_seed

IMAGE_DIR = "images/adversarial"
STATS: Counter[str] = Counter()
"""This process's counts: ``questions``, ``pairs`` and, per reason, skipped questions (``skipped:<reason>``)."""
WORLD_TASKS: tuple[str, ...] = ("existence", "count", "colour", "position", "mc", "caption")


@dataclass(frozen=True)
class AdversarialOptions:
    model: str = option("", "Policy model directory (local, safetensors; llava family). Required.")
    epsilon: float = option(8.0, "L-infinity bound of the perturbation, in pixel units out of 255 (8 = 8/255).")
    step_size: float = option(2.0, "PGD step, in pixel units out of 255.")
    steps: int = option(10, "PGD steps (each one forward and one backward pass).")
    random_start: bool = option(True, "Start PGD from a uniformly random point of the epsilon ball (seeded).")
    tasks: list[str] = option(
        ["existence", "count", "colour", "position", "mc"],
        f"World input: which training questions to attack ({', '.join(WORLD_TASKS)}).",
    )
    only_flipped: bool = option(
        False, "Keep only questions the model answered correctly on the clean image (the attack flipped them)."
    )
    max_new_tokens: int = option(16, "Longest answer the model may give (greedy decoding).")
    items_per_unit: int = option(8, "Questions attacked together in one batch: the unit of seeding and resume.")
    limit: int | None = option(None, "Use only the first N questions of the input (null: all of them).")
    dtype: str = option("float32", "Dtype of the policy: float32, bfloat16 or float16.")
    device: str | None = option(None, "Device of the policy (cpu, cuda...); null: where transformers puts it.")

    def __post_init__(self) -> None:
        if self.epsilon <= 0 or self.step_size <= 0:
            raise ConfigError("epsilon and step_size must be positive (pixel units out of 255)")
        if self.epsilon >= 255:
            raise ConfigError(f"epsilon {self.epsilon} is not a small perturbation (pixel units out of 255)")
        for name in ("steps", "max_new_tokens", "items_per_unit", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"option {name!r} must be at least 1, got {getattr(self, name)}")
        unknown = [t for t in self.tasks if t not in WORLD_TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"option 'tasks': choose from {', '.join(WORLD_TASKS)} (got {self.tasks})")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"option 'dtype' must be float32, bfloat16 or float16, got {self.dtype!r}")


# ------------------------------------------------------------------------------------------------- PGD


@dataclass
class Attack:
    """What :func:`pgd_attack` found, one entry per example."""

    images: list[list[Image.Image]]
    """The perturbed images, quantised to uint8, at the model's input resolution."""
    clean: list[list[Image.Image]]
    """The clean images as the model sees them (same resolution), for comparison."""
    nll_clean: list[float]
    """NLL (summed over answer tokens) of the answer on the clean image."""
    nll_attack: list[float]
    """The highest NLL PGD reached (before quantisation)."""
    linf: list[int]
    """Largest change of any pixel channel after quantisation, in uint8 levels."""


def _pixel_space(loaded: Any, batch: Any) -> tuple[Any, Any]:
    """CLIP-style normalisation constants (mean, std), each (1, 3, 1, 1); ConfigError for other families."""
    import torch

    pixels = batch.extras.get("pixel_values")
    image_processor = getattr(loaded.processor, "image_processor", None)
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if pixels is None or pixels.dim() != 4 or set(batch.extras) != {"pixel_values"} or mean is None or std is None:
        raise ConfigError(
            f"adversarial: PGD needs pixel_values of shape (images, 3, H, W) normalised by a mean and std (llava "
            f"family); this {loaded.family.name} model's processor gives {sorted(batch.extras)}"
        )
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def pgd_attack(
    loaded: Any,
    examples: list[Any],
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    random_start: bool,
    seeds: list[int],
) -> Attack:
    """L-infinity PGD on each example's images raising the NLL of its response (see the module docstring).

    ``examples`` are :class:`mmalign.models.Example` objects whose ``response`` is the correct answer;
    ``seeds`` (one per example) seed the random starts."""
    import torch

    from mmalign.models.logps import model_device_dtype, sequence_logps

    batch = loaded.collator(mode="train")(examples)
    mean, std = _pixel_space(loaded, batch)
    device, dtype = model_device_dtype(loaded.model)
    pixels = batch.extras["pixel_values"].float()
    owners = [i for i, e in enumerate(examples) for _ in e.images]  # the collator keeps images in example order
    clean_u8 = ((pixels * std + mean) * 255).round().clamp(0, 255)
    x0 = clean_u8 / 255
    eps, alpha = epsilon / 255, step_size / 255
    delta = torch.zeros_like(x0)
    if random_start:
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        for row, owner in enumerate(owners):
            delta[row] = (torch.rand(x0[row].shape, generator=generators[owner]) * 2 - 1) * eps
        delta = (x0 + delta).clamp(0, 1) - x0

    def nll(d: Any) -> Any:
        batch.extras["pixel_values"] = ((x0 + d - mean) / std).to(device, dtype)
        return -sequence_logps(loaded.model, batch).sum

    with torch.no_grad():
        nll_clean = nll(torch.zeros_like(x0)).tolist()
    best_delta, best = delta.clone(), [-math.inf] * len(examples)
    with torch.enable_grad():
        for step in range(steps + 1):
            d = delta.detach().requires_grad_(True)
            loss = nll(d)
            for i, value in enumerate(loss.tolist()):
                if value > best[i]:
                    best[i] = value
                    for row, owner in enumerate(owners):
                        if owner == i:
                            best_delta[row] = d[row].detach()
            if step == steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), d)
            delta = (d.detach() + alpha * grad.sign()).clamp(-eps, eps)
            delta = (x0 + delta).clamp(0, 1) - x0
    levels = math.floor(epsilon)  # rounding may not push a change past epsilon
    changed = (clean_u8 + (best_delta * 255).round().clamp(-levels, levels)).clamp(0, 255)
    linf = (changed - clean_u8).abs().amax(dim=(1, 2, 3)).tolist()
    images: list[list[Image.Image]] = [[] for _ in examples]
    clean: list[list[Image.Image]] = [[] for _ in examples]
    for row, owner in enumerate(owners):
        images[owner].append(_to_image(changed[row]))
        clean[owner].append(_to_image(clean_u8[row]))
    per_example = [
        max((int(v) for v, o in zip(linf, owners, strict=True) if o == i), default=0) for i in range(len(examples))
    ]
    return Attack(images, clean, nll_clean, best, per_example)


def _to_image(values: Any) -> Image.Image:
    """A (3, H, W) tensor of uint8 levels as an RGB image."""
    import torch

    return Image.fromarray(values.permute(1, 2, 0).to(torch.uint8).numpy())


def response_nll(loaded: Any, examples: list[Any], batch_size: int = 16) -> list[float]:
    """NLL (summed) of each example's response through the normal processor path."""
    import torch

    from mmalign.models.logps import sequence_logps

    collator, out = loaded.collator(mode="train"), []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            out += (-sequence_logps(loaded.model, collator(examples[start : start + batch_size])).sum).tolist()
    return out


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_correct(answer: str, reference: str) -> bool:
    """The answer says the reference: equal once normalised, or starting with it as whole words."""
    a, r = normalise(answer), normalise(reference)
    return bool(r) and (a == r or a.startswith(r + " "))


# ------------------------------------------------------------------------------------------------ inputs


def read_questions(inputs: BuildInputs, tasks: list[str]) -> tuple[list[dict[str, Any]], Path, str, str]:
    """Questions with their correct answers: (items, data root, fingerprint, description)."""
    from mmalign.data.io import iter_rows, parse_row

    if inputs.world is not None and inputs.input is not None:
        raise ConfigError("adversarial reads --world (its training questions) or --input, not both")
    if inputs.world is not None:
        if inputs.split != "train":
            raise ConfigError(
                "adversarial reads the world's training questions (train/sft.jsonl); for val/test items pass "
                f"--input {inputs.world}/{inputs.split}/<task>.jsonl --root {inputs.world}"
            )
        path, root = Path(inputs.world) / "train" / "sft.jsonl", Path(inputs.world)
        if not path.is_file():
            raise DataError("the world has no training questions", file=path)
    elif inputs.input is not None:
        path = Path(inputs.input)
        root = Path(inputs.root) if inputs.root is not None else path.resolve().parent
        if path.suffix.lower() != ".jsonl":
            raise ConfigError(f"adversarial reads JSONL records, not {path.name!r} (convert it first)")
    else:
        raise ConfigError("adversarial needs --world DIR or --input FILE (questions with their correct answers)")
    items, seen = [], set()
    for row in iter_rows(path):
        record = parse_row(row, file=path)
        where = {"file": path, "line": row.line, "record_id": record.id}
        if inputs.world is not None and record.meta.get("task") not in tasks:
            continue
        if record.id in seen:
            raise DataError("duplicate record id: questions need unique ids", **where)  # type: ignore[arg-type]
        seen.add(record.id)
        if not record.images or any(not isinstance(ref, str) for ref in record.images):
            raise DataError("needs image files to perturb", field="images", **where)  # type: ignore[arg-type]
        if isinstance(record, EvalItem):
            prompt, answer = user_prompt(record.question, len(record.images)), record.answer
        elif isinstance(record, SFTRecord):
            prompt, answer = record.prompt, response_text(record.completion)
        else:
            assert isinstance(record, PreferenceRecord)
            prompt, answer = record.prompt, response_text(record.chosen)
        if not answer.strip():
            raise DataError("the correct answer is empty", **where)  # type: ignore[arg-type]
        items.append({"id": record.id, "prompt": prompt, "images": list(record.images), "answer": answer})
    return items, root, file_fingerprint(path), f"{len(items)} questions of {path}"


# ------------------------------------------------------------------------------------------------ builder


class AdversarialBuilder(Builder):
    name: ClassVar[str] = "adversarial"
    options_class: ClassVar[type] = AdversarialOptions
    unit_name: ClassVar[str] = "question groups"

    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        opts = self.options
        model = check_policy(opts.model, self.name)
        items, root, inputs_print, what = read_questions(inputs, list(opts.tasks))
        if opts.limit is not None and opts.limit < len(items):
            items, what = items[: opts.limit], f"the first {opts.limit} of {what}"
        fingerprint = hashlib.sha256(f"{model_fingerprint(model)}|{inputs_print}".encode()).hexdigest()
        size = opts.items_per_unit
        units = [{"id": f"adv-{i // size:06d}", "items": items[i : i + size]} for i in range(0, len(items), size)]
        return Plan(units, root, fingerprint, {"root": str(root)}, f"{what}, {len(units)} groups of {size}")

    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord]:
        from mmalign.data.images import encode_png, load_images
        from mmalign.models.examples import Example
        from mmalign.models.generation import generate

        opts = self.options
        loaded = policy_model(opts.model, opts.dtype, opts.device)
        items = unit["items"]
        examples = []
        for item in items:
            images = load_images(item["images"], shared["root"], record_id=item["id"])
            examples.append(Example(item["id"], item["prompt"], images, assistant(item["answer"])))
        seeds = [derive_seed(seed, item["id"]) for item in items]
        attack = pgd_attack(
            loaded,
            examples,
            epsilon=opts.epsilon,
            step_size=opts.step_size,
            steps=opts.steps,
            random_start=opts.random_start,
            seeds=seeds,
        )
        attacked = [Example(e.id, e.prompt, imgs, e.response) for e, imgs in zip(examples, attack.images, strict=True)]
        nll_png = response_nll(loaded, attacked)
        questions = [Example(e.id, e.prompt, e.images) for e in examples + attacked]
        answers = generate(loaded, questions, max_new_tokens=opts.max_new_tokens, batch_size=len(questions))
        clean_answers, attacked_answers = answers[: len(items)], answers[len(items) :]
        out = []
        STATS["questions"] += len(items)
        for i, item in enumerate(items):
            clean_ok = is_correct(clean_answers[i], item["answer"])
            rejected = attacked_answers[i]
            if not rejected.strip() or is_correct(rejected, item["answer"]):
                STATS["skipped:still correct"] += 1
                continue
            if opts.only_flipped and not clean_ok:
                STATS["skipped:wrong on the clean image"] += 1
                continue
            blobs = []
            for image in attack.images[i]:
                data = encode_png(image)
                blobs.append(ImageBlob(f"{IMAGE_DIR}/{hashlib.sha256(data).hexdigest()[:20]}.png", data))
            meta = {
                "from_id": item["id"],
                "from_images": item["images"],
                "epsilon": opts.epsilon,
                "step_size": opts.step_size,
                "steps": opts.steps,
                "random_start": opts.random_start,
                "linf": attack.linf[i],
                "nll_clean": attack.nll_clean[i],
                "nll_attack": attack.nll_attack[i],
                "nll_png": nll_png[i],
                "survives_quantisation": nll_png[i] > attack.nll_clean[i],
                "answer_clean": clean_answers[i],
                "flipped": clean_ok,
                "model": opts.model,
            }
            out.append(
                PreferenceRecord(
                    id=f"{item['id']}-adv",
                    prompt=item["prompt"],
                    chosen=assistant(item["answer"]),
                    rejected=assistant(rejected),
                    images=blobs,
                    source=self.name,
                    meta=meta,
                )
            )
        STATS["pairs"] += len(out)
        return out
