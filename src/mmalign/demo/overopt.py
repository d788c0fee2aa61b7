"""Reward-model over-optimisation, measured against the shapes world's exact truth (Gao et al., 2022).

1. :func:`sample_responses`: N responses per held-out caption prompt, sampled ONCE from the policy (seeded);
2. :func:`score_samples`: each sample's proxy reward (the trained RM, :func:`mmalign.models.reward.score_examples`)
   and gold reward (the ``truth`` scorer's object F1 against the scene's ground-truth objects, CHAIR's extraction;
   precision and recall kept too), and whether it is a well-formed caption of the world's grammar;
3. :func:`bon_curves`: for each n, best-of-n under the proxy, estimated exactly over each prompt's N samples
   (:mod:`mmalign.eval.metrics.best_of_n`), averaged over prompts, with percentile-bootstrap 95 % intervals over
   prompts, and the gold change from n = 1 with its paired interval (the same prompts resampled for both);
4. :func:`plot_curves`: gold and proxy against ``KL_bon = log n − (n − 1) / n``.

Over-optimisation is gold falling while the proxy keeps rising as n (and KL) grows.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from mmalign.eval.metrics.best_of_n import best_of_n, kl_best_of_n
from mmalign.eval.metrics.bootstrap import mean_interval

GOLD = ("f1", "precision", "recall")
"""The gold rewards kept per sample (``f1`` is the one the curves are about)."""
TRACKED = ("proxy", *GOLD, "well_formed", "words")
"""What each n's best-of-n is averaged over: the proxy, the gold rewards, whether the kept response is a
well-formed caption of the world's grammar (:func:`well_formed`), and its length in words."""


def caption_prompts(world: Path, n_prompts: int) -> list[Any]:
    """The first ``n_prompts`` caption items of the world's test split ("Describe the image.", with objects)."""
    from mmalign.data.io import read_records
    from mmalign.errors import ConfigError

    path = world / "test" / "caption.jsonl"
    items = list(read_records(path, root=world))[:n_prompts]
    if len(items) < n_prompts:
        raise ConfigError(f"{path} holds {len(items)} caption prompts, fewer than the {n_prompts} asked for")
    return items


def sample_responses(
    policy: Path,
    world: Path,
    *,
    n_prompts: int,
    n_samples: int,
    seed: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    """One row per prompt: ``id``, ``objects`` (the scene's ground truth) and its ``samples`` (N texts), drawn by
    one seeded sampling call over every prompt repeated N times."""
    from mmalign.models import load
    from mmalign.models.generation import generate

    items = caption_prompts(world, n_prompts)
    loaded = load(policy)
    repeated = [item for item in items for _ in range(n_samples)]
    texts = generate(
        loaded,
        repeated,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        batch_size=batch_size,
        seed=seed,
        image_root=world,
    )
    return [
        {"id": item.id, "objects": list(item.objects), "samples": texts[i * n_samples : (i + 1) * n_samples]}
        for i, item in enumerate(items)
    ]


def caption_pattern() -> re.Pattern[str]:
    """The world's caption grammar (:func:`mmalign.objects.shapes.caption`): "There is nothing in the image.", or
    "There is P.", or "There is P, P … and P." with each P "a|an [small|large] <colour> <shape>"."""
    from mmalign.objects import shapes

    phrase = rf"(?:a|an) (?:(?:{'|'.join(shapes.SIZES)}) )?(?:{'|'.join(shapes.COLOURS)}) (?:{'|'.join(shapes.SHAPES)})"
    return re.compile(rf"There is (?:nothing in the image|{phrase}(?:(?:, {phrase})* and {phrase})?)\.")


def well_formed(text: str) -> bool:
    """Whether ``text`` is a caption the world's grammar can produce (whatever objects it names)."""
    return caption_pattern().fullmatch(text.strip()) is not None


def gold_rewards(text: str, objects: list[str]) -> dict[str, float]:
    """Object precision, recall and F1 of a caption against the scene's objects (the ``truth`` scorer's)."""
    from mmalign.pairs.scorers import TruthOptions, TruthScorer

    scorer = TruthScorer(TruthOptions(), "shapes")
    truth = [scorer.vocabulary.synonyms.get(o, o) for o in objects]
    precision, recall = scorer.precision_recall(text, truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def score_samples(reward_model: Path, world: Path, rows: list[dict[str, Any]], batch_size: int) -> None:
    """Add ``proxy`` (the RM's reward) and the gold lists (``f1``, ``precision``, ``recall``) to each row."""
    from mmalign.data.records import assistant
    from mmalign.models.examples import Example, eval_example
    from mmalign.models.reward import load_reward_model, score_examples

    items = {item.id: item for item in caption_prompts(world, len(rows))}
    examples = []
    for row in rows:
        base = eval_example(items[row["id"]])
        for k, text in enumerate(row["samples"]):
            examples.append(Example(f"{row['id']}/{k}", base.prompt, list(base.images), assistant(text)))
    rewards = score_examples(load_reward_model(reward_model), examples, batch_size=batch_size, image_root=world)
    for i, row in enumerate(rows):
        n = len(row["samples"])
        row["proxy"] = rewards[i * n : (i + 1) * n]
        golds = [gold_rewards(text, row["objects"]) for text in row["samples"]]
        for name in GOLD:
            row[name] = [g[name] for g in golds]
        row["well_formed"] = [float(well_formed(text)) for text in row["samples"]]
        row["words"] = [len(text.split()) for text in row["samples"]]


def bon_curves(
    rows: list[dict[str, Any]], ns: list[int], *, n_resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One entry per n: ``n``, ``kl``, and for ``proxy``, each gold reward and ``words`` the mean over prompts of the
    exact best-of-n expectation with its bootstrap interval over prompts (``{estimate, low, high}``); ``f1_change``:
    the gold F1 minus n = 1's, paired over prompts."""
    per_prompt = {n: {key: [best_of_n(row["proxy"], row[key], n) for row in rows] for key in TRACKED} for n in ns}
    first = per_prompt[ns[0]]["f1"]
    curves = []
    for n in ns:
        entry: dict[str, Any] = {"n": n, "kl": kl_best_of_n(n)}
        for key, values in per_prompt[n].items():
            iv = mean_interval(values, n_resamples=n_resamples, seed=seed)
            entry[key] = {"estimate": iv.estimate, "low": iv.low, "high": iv.high}
        change = mean_interval(
            [a - b for a, b in zip(per_prompt[n]["f1"], first, strict=True)], n_resamples=n_resamples, seed=seed
        )
        entry["f1_change"] = {"estimate": change.estimate, "low": change.low, "high": change.high}
        curves.append(entry)
    return curves


def within_prompt_correlation(rows: list[dict[str, Any]], key: str = "f1") -> dict[str, Any]:
    """The Pearson correlation of proxy and ``key`` among each prompt's samples, averaged over the prompts where
    both vary (how well the proxy ranks the policy's own samples, which is all best-of-n uses)."""
    import numpy as np

    values = []
    for row in rows:
        proxy, gold = np.asarray(row["proxy"], dtype=float), np.asarray(row[key], dtype=float)
        if proxy.std() > 0 and gold.std() > 0:
            values.append(float(np.corrcoef(proxy, gold)[0, 1]))
    return {"mean": float(np.mean(values)) if values else None, "prompts": len(values)}


def describe_curve(curves: list[dict[str, Any]]) -> str:
    """One plain sentence on what the curves show: does gold peak and fall while the proxy rises?"""
    gold = [c["f1"]["estimate"] for c in curves]
    proxy = [c["proxy"]["estimate"] for c in curves]
    peak = max(range(len(gold)), key=gold.__getitem__)
    last = curves[-1]
    rises = all(b >= a - 1e-9 for a, b in itertools.pairwise(proxy))
    proxy_text = "rises at every n" if rises else "does not rise monotonically"
    change = last["f1_change"]
    sig = "its interval excludes 0" if change["low"] > 0 or change["high"] < 0 else "its interval includes 0"
    head = (
        f"The proxy reward {proxy_text} ({proxy[0]:+.3f} → {proxy[-1]:+.3f}); gold F1 goes {gold[0]:.3f} → "
        f"{gold[-1]:.3f} at n = {last['n']} (change {change['estimate']:+.3f}, 95 % CI [{change['low']:+.3f}, "
        f"{change['high']:+.3f}], {sig})"
    )
    falls = change["high"] < 0
    if 0 < peak < len(curves) - 1 and gold[peak] - gold[-1] > 0.002:
        rise = curves[peak]["f1_change"]
        noise = ", within noise: its paired CI includes 0" if rise["low"] <= 0 else ""
        tail = (
            f": gold peaks at n = {curves[peak]['n']} (KL {curves[peak]['kl']:.2f} nats, F1 {gold[peak]:.3f}, "
            f"{rise['estimate']:+.3f} on n = 1{noise}) and then falls by {gold[peak] - gold[-1]:.3f} while the proxy "
            "keeps rising: over-optimisation."
        )
    elif peak == 0 and falls:
        tail = (
            f": gold is highest at n = 1 (n = 2: {gold[1] - gold[0]:+.3f}) and falls as the proxy rises, "
            "over-optimisation with no rising phase: the samples the proxy ranks highest are where its errors are."
        )
    elif gold[-1] >= max(gold) - 0.002:
        tail = f": gold does not fall within n ≤ {last['n']}: no over-optimisation is visible at this KL."
    else:
        tail = f": gold is highest at n = {curves[peak]['n']}, with no clear fall beyond it."
    return head + tail


def curve_table(curves: list[dict[str, Any]]) -> list[str]:
    """The curves as Markdown table lines (estimates with 95 % intervals)."""

    def cell(iv: dict[str, float], signed: bool = False) -> str:
        f = "{:+.3f}" if signed else "{:.3f}"
        return f"{f.format(iv['estimate'])} [{f.format(iv['low'])}, {f.format(iv['high'])}]"

    lines = [
        "| n | KL_bon (nats) | proxy (RM) | gold F1 | gold F1 − n=1 | precision | recall | well-formed | words |",
        "|---:|---:|---|---|---|---|---|---:|---:|",
    ]
    for c in curves:
        lines.append(
            f"| {c['n']} | {c['kl']:.3f} | {cell(c['proxy'], True)} | {cell(c['f1'])} | "
            f"{cell(c['f1_change'], True)} | {cell(c['precision'])} | {cell(c['recall'])} | "
            f"{c['well_formed']['estimate']:.3f} | {c['words']['estimate']:.1f} |"
        )
    return lines


def plot_curves(curves: list[dict[str, Any]], path: Path, title: str) -> None:
    """Three panels against KL_bon, n marked on top: gold (F1 with its 95 % band, precision, recall), gold F1's
    change from n = 1 (paired band: the same prompts), and the proxy."""
    from mmalign.eval.report import _figure, _save

    plt = _figure()
    kl = [c["kl"] for c in curves]
    fig, (gold_ax, change_ax, proxy_ax) = plt.subplots(1, 3, figsize=(14, 4))

    def band(ax: Any, key: str, colour: str, label: str, style: str = "-") -> None:
        ax.plot(kl, [c[key]["estimate"] for c in curves], style, marker="o", markersize=4, color=colour, label=label)
        ax.fill_between(kl, [c[key]["low"] for c in curves], [c[key]["high"] for c in curves], color=colour, alpha=0.15)

    band(gold_ax, "f1", "C0", "gold F1 (95 % band)")
    for key, colour, style, label in (
        ("precision", "C2", "--", "gold precision"),
        ("recall", "C4", ":", "gold recall"),
        ("well_formed", "C7", "-.", "well-formed captions (share)"),
    ):
        gold_ax.plot(kl, [c[key]["estimate"] for c in curves], style, marker=".", color=colour, label=label)
    gold_ax.set_title("gold reward (exact truth) of best-of-n", fontsize=10)
    gold_ax.set_ylabel("object F1 / precision / recall / share", fontsize=9)
    gold_ax.legend(fontsize=8, frameon=False)
    band(change_ax, "f1_change", "C0", "gold F1 − n=1")
    change_ax.axhline(0.0, color="0.35", linestyle="--", linewidth=1)
    change_ax.set_title("gold F1 minus n = 1's (paired 95 % band)", fontsize=10)
    band(proxy_ax, "proxy", "C3", "proxy")
    proxy_ax.set_title("proxy reward (the RM) of best-of-n", fontsize=10)
    proxy_ax.set_ylabel("RM reward", fontsize=9)
    for ax in (gold_ax, change_ax, proxy_ax):
        ax.set_xlabel("KL_bon = log n − (n − 1)/n (nats)", fontsize=9)
        ax.grid(color="0.9")
        top = ax.secondary_xaxis("top")
        top.set_xticks(kl)
        top.set_xticklabels([str(c["n"]) for c in curves], fontsize=7)
        top.set_xlabel("n", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def write_samples(path: Path, rows: list[dict[str, Any]]) -> None:
    """The samples (and their rewards, once scored) as JSON lines, atomically."""
    from mmalign.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def read_samples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
