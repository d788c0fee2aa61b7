"""GRPO step throughput and peak memory: TRL 1.16 ``GRPOTrainer`` against mmalign, same model, prompts and G.

    python bench/grpo_vs_trl.py [--steps 6] [--prompts 2] [--group 8] [--max-new-tokens 32]
                                [--image-size 336 --patch-size 14] [--device cpu] [--repeats 1]

The model is a tiny LLaVA (``spec_for("tiny-llava")`` widths) at LLaVA-1.5's image-token count (336 px images in
14 px patches: 576 image tokens). The prompts are shapes-world scenes with "Describe the image." Each step takes
``--prompts`` prompts and samples ``--group`` completions of at most ``--max-new-tokens`` tokens for each (the random
model rarely ends early, so completions are about that long on both sides), scored by the same reward (the share
of even token ids: cheap, so the step is the model's work), then one gradient step: ``loss_type dapo``, β = 0, ε =
0.2, temperature 1, AdamW, linear decay, gradient norm clipped to 1, fp32, gradient checkpointing off.

* ``trl``: ``GRPOTrainer`` with ``per_device_train_batch_size = prompts × G`` and ``num_generations = G``: every
  prompt is repeated G times and ``generate`` prefills each copy (vision tower included);
* ``mmalign``: :class:`mmalign.train.grpo.GRPOTrainer`: each prompt + image prefilled once and its KV cache shared
  by the G completions (:mod:`mmalign.models.rollout`), the update's forward with the shared prefix.

Each run is its own subprocess (peak memory is its own); throughput is completions per second from the median step
time over steps 2..N. Memory is printed as in ``bench/pref_vs_trl.py``: the absolute peak RSS and the peak above
the process's RSS after imports. Sampling differs between the two (each draws its own completions), so their
training losses are not compared step by step; instead ``loss-check`` scores ONE set of completions both ways: the
loss of mmalign's step and TRL's ``GRPOTrainer._compute_loss`` on the same prompt and completion tokens, images and
advantages, and prints the difference of the losses and of their gradients.
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

from pref_vs_trl import MEMORY, current_rss_mb, peak_rss_mb

RUNS = ("trl", "mmalign")
QUESTION = "Describe the image."


def scenes(n: int, image_size: int, seed: int = 0) -> list[Any]:
    """``n`` rendered shapes-world scenes (PIL images, deterministic given the seed)."""
    from mmalign.world import WorldConfig, render, sample_scene

    cfg = WorldConfig(image_size=image_size, min_objects=7, max_objects=7)
    rng = random.Random(seed)
    return [render(sample_scene(rng, cfg, f"bench-{i}"), image_size) for i in range(n)]


def even_tokens(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """The share of each completion's token ids that are even (the same reward on both sides)."""
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def recorder(times: list[float], lengths: list[float]) -> Any:
    """A ``TrainerCallback`` noting when each step ends and each step's mean completion length (both sides log
    ``completions/mean_length``)."""
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_step_end(self, *a: Any, **kw: Any) -> None:
            times.append(time.perf_counter())

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None, **kw: Any):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    return Record()


def run_trl(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from mmalign.models import load

    def reward(prompts: Any, completions: Any, completion_ids: list[list[int]], **kw: Any) -> list[float]:
        return even_tokens(completion_ids)

    images = scenes(args.steps * args.prompts, args.image_size, args.seed)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": QUESTION}], "image": im} for im in images])
    policy = load(args.model_dir)
    times: list[float] = []
    lengths: list[float] = []
    config = GRPOConfig(
        output_dir=str(Path(args.work) / "trl-out"),
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        learning_rate=args.lr,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        shuffle_dataset=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=policy.model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=policy.processor,
        callbacks=[recorder(times, lengths)],
    )
    trainer.train()
    return {"times": times, "lengths": lengths}


def grpo_config(args: argparse.Namespace, out: Path) -> Any:
    """mmalign's ``GRPOConfig`` set up like the TRL run (prompts come in memory, so ``data.train`` names nothing)."""
    from mmalign.config import config_from_dict
    from mmalign.train.grpo import GRPOConfig

    train = {"output_dir": str(out), "max_steps": args.steps, "batch_size": args.prompts, "seed": args.seed}
    train |= {"learning_rate": args.lr, "lr_scheduler": "linear", "max_grad_norm": 1.0, "logging_steps": 1}
    return config_from_dict(
        GRPOConfig,
        {
            "model": {"path": args.model_dir},
            "data": {"train": "in-memory"},
            "train": train,
            "loss": {"loss_type": "dapo", "beta": 0.0, "epsilon": 0.2},
            "grpo": {"group_size": args.group, "max_new_tokens": args.max_new_tokens, "temperature": 1.0},
        },
    )


def run_mmalign(args: argparse.Namespace) -> dict[str, Any]:
    from mmalign.models import load
    from mmalign.train.grpo import build_trainer
    from mmalign.train.prompts import Prompt, PromptDataset

    out = Path(args.work) / f"mmalign-{os.getpid()}"
    images = scenes(args.steps * args.prompts, args.image_size, args.seed)
    from mmalign.data.records import user_prompt

    prompts = PromptDataset([Prompt(f"s{i}", user_prompt(QUESTION, 1), [im]) for i, im in enumerate(images)], out, "x")
    config = grpo_config(args, out)
    times: list[float] = []
    lengths: list[float] = []
    trainer = build_trainer(
        config,
        load(args.model_dir),
        reward_funcs=[lambda completion_ids, **kw: even_tokens(completion_ids)],
        callbacks=[recorder(times, lengths)],
        sets={"train": prompts},
        optim="adamw_torch",
        train_sampling_strategy="sequential",
        use_cpu=args.device == "cpu",
    )
    trainer.train()
    return {"times": times, "lengths": lengths}


def loss_check(args: argparse.Namespace) -> dict[str, Any]:
    """One set of completions (mmalign's sampler), scored by mmalign's step and by TRL's ``_compute_loss``."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    from mmalign.data.records import user_prompt
    from mmalign.models import load
    from mmalign.models.examples import Example
    from mmalign.models.rollout import sample_groups
    from mmalign.train.grpo import build_trainer
    from mmalign.train.prompts import Prompt, PromptDataset

    images = scenes(args.prompts, args.image_size, args.seed)
    prompts = [Prompt(f"s{i}", user_prompt(QUESTION, 1), [im]) for i, im in enumerate(images)]
    loaded = load(args.model_dir)
    out = Path(args.work) / "loss-check"
    config = grpo_config(args, out)
    ours = build_trainer(
        config,
        loaded,
        reward_funcs=[lambda completion_ids, **kw: even_tokens(completion_ids)],
        sets={"train": PromptDataset(prompts, out, "x")},
        use_cpu=True,
    )
    items = [Example(p.id, p.prompt, p.images) for p in prompts]
    rollouts = sample_groups(loaded, items, args.group, config.grpo.sampling(), seed=args.seed)
    ours.rollouts = lambda model, p, root: rollouts
    model = ours.model.train()
    model.zero_grad(set_to_none=True)
    step = ours.batch_loss(model, {"prompts": prompts, "root": out}).loss
    step.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    from mmalign.losses.advantages import group_advantages

    ids = [r[m.bool()].tolist() for r, m in zip(rollouts.completion_ids, rollouts.completion_mask, strict=True)]
    advantages = group_advantages(torch.tensor(even_tokens(ids)), args.group).advantages
    trl = TRLTrainer(
        model=model,
        reward_funcs=[lambda completion_ids, **kw: even_tokens(completion_ids)],
        args=TRLConfig(
            output_dir=str(out / "trl"),
            per_device_train_batch_size=args.prompts * args.group,
            num_generations=args.group,
            max_completion_length=args.max_new_tokens,
            beta=0.0,
            loss_type="dapo",
            bf16=False,  # TRL's default is bf16 autocast where available; both sides fp32 here
            fp16=False,
            report_to=[],
            use_cpu=True,
        ),
        train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": QUESTION}]}]),
        processing_class=loaded.processor,
    )
    prompt_ids = rollouts.prompts.input_ids[rollouts.prompt_index]
    if not bool(rollouts.prompts.attention_mask.all()):
        raise SystemExit("loss-check needs prompts of one length (no padding): use one question and one image size")
    completion_mask = rollouts.completion_mask
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": rollouts.completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum(),
        "pixel_values": rollouts.prompts.extras["pixel_values"][rollouts.prompt_index],
        "num_images": [1] * len(rollouts),
    }
    trl.current_gradient_accumulation_steps = 1  # set by the training loop; one window here
    theirs = trl._compute_loss(model, inputs)
    theirs.backward()
    grad_diff = max((p.grad - grads[n]).abs().max().item() for n, p in model.named_parameters() if n in grads)
    grad_scale = max(g.abs().max().item() for g in grads.values())
    return {
        "mmalign": step.item(),
        "trl": theirs.item(),
        "diff": abs(step.item() - theirs.item()),
        "grad_diff": grad_diff,
        "grad_scale": grad_scale,
    }


def worker(args: argparse.Namespace) -> None:
    import datasets  # noqa: F401  every run imports the same libraries, so the RSS baselines compare
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import mmalign.train.grpo  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = current_rss_mb()
    if args.run == "loss-check":
        Path(args.out).write_text(json.dumps(loss_check(args)), encoding="utf-8")
        return
    result = run_trl(args) if args.run == "trl" else run_mmalign(args)
    steps = [b - a for a, b in zip(result["times"], result["times"][1:], strict=False)]  # steps 2..N
    result["completions_per_s"] = args.prompts * args.group / statistics.median(steps) if steps else float("nan")
    result["baseline_rss_mb"] = baseline
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_above_baseline_mb"] = result["peak_rss_mb"] - baseline
    result["threads"] = torch.get_num_threads()
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="Training steps per run (the first is warm-up).")
    parser.add_argument("--prompts", type=int, default=2, help="Prompts per step.")
    parser.add_argument("--group", type=int, default=8, help="Completions per prompt (G).")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Longest completion in tokens.")
    parser.add_argument("--image-size", type=int, default=336, help="Image side in pixels.")
    parser.add_argument("--patch-size", type=int, default=14, help="Vision patch side: (image/patch)^2 image tokens.")
    parser.add_argument("--lr", type=float, default=1e-5, help="Learning rate on both sides.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data and of the sampling.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default).")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="Where the runs train.")
    parser.add_argument("--repeats", type=int, default=1, help="Run every configuration this often; keep the fastest.")
    parser.add_argument("--run", choices=(*RUNS, "loss-check"), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        worker(args)
        return

    from mmalign.models import save_tiny, spec_for
    from timing import print_header

    print_header("GRPO against TRL: throughput, peak memory, same-completions loss", ("trl", "accelerate", "datasets"))
    forwarded = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("run", "model_dir", "work", "out", "repeats") and v is not None
    ]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as work:
        spec = spec_for("tiny-llava", image_size=args.image_size, patch_size=args.patch_size)
        model_dir = save_tiny(spec, Path(work) / "model")

        def launch(run: str) -> dict[str, Any]:
            out = Path(work) / f"{run}.json"
            command = [sys.executable, __file__, *forwarded, f"--run={run}", f"--model-dir={model_dir}"]
            command += [f"--work={work}", f"--out={out}"]
            subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            return json.loads(out.read_text(encoding="utf-8"))

        for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits both alike
            for run in RUNS:
                result = launch(run)
                if run not in results or result["completions_per_s"] > results[run]["completions_per_s"]:
                    results[run] = result
        check = launch("loss-check")
    report(args, results, check)


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], check: dict[str, Any]) -> None:
    trl, ours = results["trl"], results["mmalign"]
    n_image = (args.image_size // args.patch_size) ** 2
    print(
        f"\nGRPO, tiny LLaVA ({n_image} image tokens), {args.steps} steps x {args.prompts} prompts x G={args.group} "
        f"completions of <= {args.max_new_tokens} tokens, fp32, {args.device}, {trl['threads']} threads"
    )
    columns = f"{'completions/s':>13} {'x TRL':>6} {'peak RSS MB':>11} {'x TRL':>6} {'above MB':>8} {'x TRL':>6} length"
    print(f"{'run':<10} {columns}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['completions_per_s']:>13.2f} {r['completions_per_s'] / trl['completions_per_s']:>6.2f} "
            f"{r['peak_rss_mb']:>11.0f} {r['peak_rss_mb'] / trl['peak_rss_mb']:>6.2f} "
            f"{r['peak_above_baseline_mb']:>8.0f} {r['peak_above_baseline_mb'] / trl['peak_above_baseline_mb']:>6.2f} "
            f"{statistics.mean(r['lengths']):.1f}"
        )
    print(f"throughput ratio mmalign/TRL: {ours['completions_per_s'] / trl['completions_per_s']:.2f}")
    for key, what in MEMORY:
        print(f"memory ratio mmalign/TRL, {what}: {ours[key] / trl[key]:.2f}")
    print(
        f"same completions, one step's loss: mmalign {check['mmalign']:.8f}, TRL _compute_loss {check['trl']:.8f}, "
        f"|diff| {check['diff']:.1e}; its gradient: max |diff| {check['grad_diff']:.1e} over parameters whose "
        f"largest gradient entry is {check['grad_scale']:.1e} (on-policy, the loss is about 0 in value: ratio 1, "
        "advantages of mean 0; the gradient -A grad log pi carries the comparison)"
    )


if __name__ == "__main__":
    main()
