"""DPO training throughput and peak memory: TRL 1.16 ``DPOTrainer`` against mmalign, same model, data and batch.

    python bench/pref_vs_trl.py [--steps 8] [--batch-size 4] [--image-size 336 --patch-size 14] [--device cpu]

The model is a tiny LLaVA (CLIP tower + Llama, ``spec_for("tiny-llava")`` widths) at a realistic image-token count:
336 px images in 14 px patches = 576 image tokens, as LLaVA-1.5. The data are shapes-world preference pairs: a
7-object scene, chosen = its caption and the position of one object (48 tokens), rejected = the same with an absent
object named (a hallucination). Prompts alternate between two questions, so prompt lengths differ inside a batch.

The pairs are written once (JSONL + lossless PNGs) and read by every run. Each run is a separate subprocess (so
peak memory is its own), trained for ``--steps`` steps of ``--batch-size`` pairs in file order, fp32, sigmoid DPO
loss (beta 0.1), AdamW as TRL's Trainer sets it up (linear decay, no warm-up, gradient norm clipped to 1, no weight
decay), the same learning rate on both sides, gradient checkpointing off on both sides (TRL's default is on; it
changes memory and time, not the loss). The first TRL batch is checked to hold the same prompt and response tokens
as mmalign's collator makes.

* ``trl``: ``DPOTrainer`` with a reference model in memory (TRL refuses precomputed reference log-probs for vision
  datasets: the run with ``precompute_ref_log_probs=True`` is tried and its error printed);
* ``mmalign``: ``mmalign.train.preference.PreferenceTrainer`` (``build_trainer``, a ``transformers.Trainer`` like
  TRL's) with ``share_prefix: true`` (prompt + image once per pair, :mod:`mmalign.models.prefix`, for policy and
  reference) and a frozen reference copy in memory;
* ``mmalign-precomputed``: the same with ``reference.mode: precomputed``: one reference pass before training
  (its setup time is shown), no reference model kept;
* ``mmalign-concat`` (with ``--all``): mmalign with ``share_prefix: false``, to separate the prefix's share.

Throughput is pairs per second from the median step time over steps 2..N (the first step is warm-up; the median
keeps a busy shared machine's spikes out), data collation included on both sides.
Peak memory is printed two ways, both measured in every run, each as a ratio to TRL's:

* *absolute peak resident memory*: the process's peak RSS (``ru_maxrss``), everything it held, libraries included;
* *peak above the process baseline*: that peak minus the process's RSS after imports, before any data or model is
  loaded (every run imports the same libraries, so the baselines match): the memory training itself added.

On CUDA the peak of ``torch.cuda.max_memory_allocated`` is printed as well. Losses are compared step by step with
TRL's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = ("trl", "mmalign", "mmalign-precomputed", "mmalign-concat")
QUESTIONS = ("Describe the image.", "What is in the image? Describe it.")
# The two peak-memory figures every run measures: (result key, the name the report prints).
MEMORY = (
    ("peak_rss_mb", "absolute peak resident memory (the process's peak RSS, libraries included)"),
    ("peak_above_baseline_mb", "peak resident memory above the process baseline (peak RSS - RSS after imports)"),
)


def pref_records(n: int, image_size: int, seed: int = 0) -> list[Any]:
    """``n`` shapes-world preference pairs (deterministic given the seed)."""
    from mmalign.data.records import PreferenceRecord, assistant, user_prompt
    from mmalign.objects import shapes
    from mmalign.world import WorldConfig, object_types, render, sample_scene
    from mmalign.world.text import phrase

    cfg = WorldConfig(image_size=image_size, min_objects=7, max_objects=7)
    rng = random.Random(seed)
    records = []
    for i in range(n):
        scene = sample_scene(rng, cfg, f"bench-{i}")
        phrases = [phrase(o, cfg) for o in scene.objects]
        where = f"The {scene.objects[0].name} is at the {scene.position(scene.objects[0])}."
        absent = rng.choice([t for t in object_types(cfg) if t not in scene.names]).split(" ", 1)
        wrong = [*phrases]
        wrong.insert(rng.randrange(len(wrong) + 1), shapes.object_phrase(absent[0], absent[1], "small"))
        prompt = user_prompt(QUESTIONS[i % len(QUESTIONS)], 1)
        chosen, rejected = f"{shapes.caption(phrases)} {where}", f"{shapes.caption(wrong)} {where}"
        image = render(scene, cfg.image_size)
        records.append(PreferenceRecord(f"p{i}", prompt, assistant(chosen), assistant(rejected), [image]))
    return records


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# ------------------------------------------------------------------------------------------------ runs


def write_data(out: Path, n: int, image_size: int, seed: int) -> Path:
    """The pairs as a JSONL file with PNG images beside it (lossless: both sides read the same pixels)."""
    from mmalign.data.io import write_jsonl

    (out / "images").mkdir(parents=True)
    rows = []
    for record in pref_records(n, image_size, seed):
        record.images[0].save(out / "images" / f"{record.id}.png")
        rows.append({**record.to_dict(), "images": [f"images/{record.id}.png"]})
    write_jsonl(out / "train.jsonl", rows)
    return out / "train.jsonl"


def recorder(args: argparse.Namespace, times: list[float], losses: list[float]) -> Any:
    """A ``TrainerCallback`` noting when each step ends and each step's logged loss (logging_steps=1)."""
    import torch
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_step_end(self, *a: Any, **kw: Any) -> None:
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None, **kw: Any):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Record()


def run_trl(args: argparse.Namespace, data_file: Path) -> dict[str, Any]:
    from datasets import Dataset
    from PIL import Image
    from trl import DPOConfig, DPOTrainer

    from mmalign.models import load
    from mmalign.train.dataset import RecordDataset

    def trl_config(precompute: bool) -> DPOConfig:
        return DPOConfig(
            output_dir=str(Path(args.work) / "trl-out"),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            beta=args.beta,
            loss_type=["sigmoid"],
            gradient_checkpointing=False,
            bf16=False,
            fp16=False,
            optim="adamw_torch",
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            max_length=None,
            train_sampling_strategy="sequential",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=args.device == "cpu",
            seed=args.seed,
            dataloader_num_workers=0,
            precompute_ref_log_probs=precompute,
            disable_tqdm=True,
        )

    records = RecordDataset.from_file(data_file, kinds=("preference",)).records
    rows = [
        {
            "images": [Image.open(data_file.parent / path).convert("RGB") for path in r.images],
            "prompt": r.prompt,
            "chosen": r.chosen,
            "rejected": r.rejected,
        }
        for r in records
    ]
    dataset = Dataset.from_list(rows)
    policy, reference = load(args.model_dir), load(args.model_dir)
    refusal = None
    try:
        DPOTrainer(
            policy.model,
            ref_model=reference.model,
            args=trl_config(True),
            train_dataset=dataset,
            processing_class=policy.processor,
        )
    except ValueError as err:
        refusal = str(err).split(". ")[0]
    policy, reference = load(args.model_dir), load(args.model_dir)  # fresh weights after the refused attempt
    times: list[float] = []
    losses: list[float] = []
    trainer = DPOTrainer(
        policy.model,
        ref_model=reference.model,
        args=trl_config(False),
        train_dataset=dataset,
        processing_class=policy.processor,
        callbacks=[recorder(args, times, losses)],
    )
    trl_batch = trainer.data_collator([dataset[i] for i in range(args.batch_size)])
    same = same_tokens(trl_batch, policy.collator(image_root=data_file.parent)(records[: args.batch_size]))
    trainer.train()
    return {"losses": losses, "times": times, "same_tokens": same, "refusal": refusal}


def same_tokens(trl_batch: dict[str, Any], ours: Any) -> bool:
    """Whether TRL's collator gives each row the prompt and response tokens mmalign's collator gives it."""
    for row in range(len(ours)):
        keep = trl_batch["attention_mask"][row].bool()
        completion = trl_batch["completion_mask"][row].bool()
        trl_prompt = trl_batch["input_ids"][row][keep & ~completion].tolist()
        trl_response = trl_batch["input_ids"][row][keep & completion].tolist()
        n = int(ours.prompt_lengths[row])
        response = ours.labels[row][ours.labels[row] != -100].tolist()
        if trl_prompt != ours.input_ids[row, :n].tolist() or trl_response != response:
            return False
    return True


def run_mmalign(args: argparse.Namespace, data_file: Path) -> dict[str, Any]:
    """mmalign's ``PreferenceTrainer`` (``build_trainer``), configured like the TRL run."""
    from mmalign.config import config_from_dict
    from mmalign.models import load
    from mmalign.train.preference import PreferenceConfig, build_trainer

    out = Path(args.work) / f"{args.run}-{os.getpid()}"
    precomputed = args.run == "mmalign-precomputed"
    reference = {"mode": "precomputed", "cache_dir": str(out / "reference-cache")} if precomputed else {"mode": "model"}
    config = config_from_dict(
        PreferenceConfig,
        {
            "model": {"path": args.model_dir},
            "data": {"train": str(data_file)},
            "train": {
                "output_dir": str(out),
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "learning_rate": args.lr,
                "lr_scheduler": "linear",
                "max_grad_norm": 1.0,
                "logging_steps": 1,
            },
            "loss": {"name": "sigmoid", "options": {"beta": args.beta}},
            "reference": reference,
            "share_prefix": args.run != "mmalign-concat",
        },
    )
    times: list[float] = []
    losses: list[float] = []
    start = time.perf_counter()
    trainer = build_trainer(
        config,
        load(args.model_dir),
        [recorder(args, times, losses)],
        optim="adamw_torch",
        train_sampling_strategy="sequential",
        use_cpu=args.device == "cpu",
    )
    setup_s = time.perf_counter() - start
    trainer.train()
    batch = trainer.collators["train"]([trainer.train_dataset[i] for i in range(args.batch_size)]).rows
    prompt, response = batch.prompt_lengths.float().mean().item(), (batch.labels[: args.batch_size] != -100).sum()
    return {
        "losses": losses,
        "times": times,
        "setup_s": setup_s,
        "shared_prefix": trainer.shares_prefix,
        "tokens": {"prompt": prompt, "response": response.item() / args.batch_size},
    }


def worker(args: argparse.Namespace) -> None:
    import datasets  # noqa: F401  every run imports the same libraries, so the RSS baselines compare
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import mmalign.train.preference  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = current_rss_mb()
    data_file = Path(args.work) / "data" / "train.jsonl"
    result = run_trl(args, data_file) if args.run == "trl" else run_mmalign(args, data_file)
    steps = [b - a for a, b in zip(result["times"], result["times"][1:], strict=False)]  # steps 2..N
    result["pairs_per_s"] = args.batch_size / statistics.median(steps) if steps else float("nan")
    result["baseline_rss_mb"] = baseline
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_above_baseline_mb"] = result["peak_rss_mb"] - baseline
    if args.device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["threads"] = torch.get_num_threads()
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="Training steps per run (the first is warm-up).")
    parser.add_argument("--batch-size", type=int, default=4, help="Preference pairs per step.")
    parser.add_argument("--image-size", type=int, default=336, help="Image side in pixels.")
    parser.add_argument("--patch-size", type=int, default=14, help="Vision patch side: (image/patch)^2 image tokens.")
    parser.add_argument("--lr", type=float, default=1e-4, help="Learning rate on both sides (large enough to move).")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta on both sides.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data (the weights come from the spec).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default).")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="Where the runs train.")
    parser.add_argument("--all", action="store_true", help="Also run mmalign with the concatenated forward.")
    parser.add_argument("--repeats", type=int, default=1, help="Run every configuration this often; keep the fastest.")
    parser.add_argument("--run", choices=RUNS, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        worker(args)
        return

    from mmalign.models import save_tiny, spec_for
    from timing import print_header

    print_header("DPO against TRL: throughput, peak memory and losses", libraries=("trl", "accelerate", "datasets"))

    runs = RUNS if args.all else RUNS[:3]
    results: dict[str, dict[str, Any]] = {}
    forwarded = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("run", "model_dir", "work", "out", "all", "repeats") and v is not None
    ]
    with tempfile.TemporaryDirectory() as work:
        model_dir = save_tiny(
            spec_for("tiny-llava", image_size=args.image_size, patch_size=args.patch_size), Path(work) / "model"
        )
        write_data(Path(work) / "data", args.steps * args.batch_size, args.image_size, args.seed)
        for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits every run alike
            for run in runs:
                out = Path(work) / f"{run}.json"
                command = [
                    sys.executable,
                    __file__,
                    *forwarded,
                    f"--run={run}",
                    f"--model-dir={model_dir}",
                    f"--work={work}",
                    f"--out={out}",
                ]
                subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
                result = json.loads(out.read_text(encoding="utf-8"))
                if run not in results or result["pairs_per_s"] > results[run]["pairs_per_s"]:
                    results[run] = result  # the fastest repeat (its losses are checked like every repeat's)
                if result["losses"] != results[run]["losses"]:
                    raise SystemExit(f"{run}: losses changed between repeats")
    report(args, results)


def ratio(results: dict[str, dict[str, Any]], run: str, key: str) -> float:
    """``run``'s figure ``key`` over TRL's."""
    return results[run][key] / results["trl"][key]


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    trl, ours = results["trl"], results["mmalign"]
    n_image = (args.image_size // args.patch_size) ** 2
    print(
        f"\nDPO, tiny LLaVA ({n_image} image tokens, prompt {ours['tokens']['prompt']:.0f} tokens with them, "
        f"chosen response {ours['tokens']['response']:.0f} tokens), {args.steps} steps x {args.batch_size} pairs, "
        f"fp32, {args.device}, {trl['threads']} threads"
    )
    print(f"same prompt and response tokens on both sides: {trl['same_tokens']}")
    print(f"TRL with precompute_ref_log_probs=True: {trl['refusal'] or 'accepted'}")
    print(
        "memory in MB: 'peak RSS' = absolute peak resident memory; 'baseline' = resident memory after imports, "
        "before data and models; 'above' = peak RSS - baseline"
    )
    cuda = args.device == "cuda"
    print(
        f"{'run':<22} {'pairs/s':>8} {'x TRL':>6} {'peak RSS':>8} {'x TRL':>6} {'baseline':>8} {'above':>7} "
        f"{'x TRL':>6}{'  CUDA MB  x TRL' if cuda else ''} {'max |loss - TRL|':>17}  losses"
    )
    for name, r in results.items():
        diff = max(abs(a - b) for a, b in zip(r["losses"], trl["losses"], strict=True))
        extra = f" (setup with the reference pass {r['setup_s']:.1f} s)" if name == "mmalign-precomputed" else ""
        gpu = f" {r['peak_cuda_mb']:>8.0f} {ratio(results, name, 'peak_cuda_mb'):>6.2f}" if cuda else ""
        print(
            f"{name:<22} {r['pairs_per_s']:>8.2f} {ratio(results, name, 'pairs_per_s'):>6.2f} "
            f"{r['peak_rss_mb']:>8.0f} {ratio(results, name, 'peak_rss_mb'):>6.2f} {r['baseline_rss_mb']:>8.0f} "
            f"{r['peak_above_baseline_mb']:>7.0f} {ratio(results, name, 'peak_above_baseline_mb'):>6.2f}{gpu} "
            f"{diff:>17.1e}  {' '.join(f'{x:.4f}' for x in r['losses'])}{extra}"
        )
    memory = [*MEMORY, *([("peak_cuda_mb", "peak CUDA memory allocated (torch.cuda.max_memory_allocated)")] * cuda)]
    like_for_like = "reference model in memory on both sides (the like-for-like comparison)"
    for name, label in (("mmalign-precomputed", "precomputed reference"), ("mmalign", like_for_like)):
        print(f"{label}:")
        print(f"  throughput ratio mmalign/TRL: {ratio(results, name, 'pairs_per_s'):.2f}")
        for key, what in memory:
            print(f"  memory ratio mmalign/TRL, {what}: {ratio(results, name, key):.2f}")
    worst = max(abs(a - b) for r in results.values() for a, b in zip(r["losses"], trl["losses"], strict=True))
    print(f"loss max abs diff: {worst:.1e}")


if __name__ == "__main__":
    main()
