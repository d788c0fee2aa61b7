"""``train grpo`` in two processes on CPU (gloo, ``torch.distributed.run``).

DDP (``train_grpo`` as ``accelerate launch`` runs it): each process samples its own prompts' groups, the weights
stay identical, the logged metrics are the means (and extremes) over the processes, and the first step's gradient
is what one process computes on the union of both processes' rollouts.

FSDP2 (``fully_shard`` by hand: accelerate runs FSDP on GPUs only): sampling through
:func:`mmalign.train.gathered.sampling_view` gives the unsharded model's greedy and seeded completions, the
weights are sharded again after, and a GRPO step on the sharded model has the same gradient as one process on the
union."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mmalign.config import load_config
from mmalign.losses.advantages import group_advantages
from mmalign.losses.grpo import RolloutLogps
from mmalign.models import load, sequence_logps
from mmalign.models.examples import Example
from mmalign.models.logps import SHARDED, tempered
from mmalign.models.rollout import sample_groups
from mmalign.seeding import derive_seed
from mmalign.train.callbacks import read_metrics
from mmalign.train.grpo import GRPOConfig
from mmalign.train.prompts import read_prompts
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="this torch build has no gloo backend for processes on CPU",
    ),
]

# DDP: records, per process, each training step's prompts, completions and step metrics (batch_loss), the gradient
# of step 1 after DDP's all-reduce (before the optimiser) and the weights at the end.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from safetensors.torch import save_file
    from transformers import TrainerCallback
    from mmalign.config import load_config
    from mmalign.train import grpo

    out = Path(sys.argv[2])
    steps = []
    batch_loss, rollouts = grpo.GRPOTrainer.batch_loss, grpo.GRPOTrainer.rollouts

    def recorded_rollouts(self, model, prompts, root):
        made = rollouts(self, model, prompts, root)
        ids = [row[m.bool()].tolist() for row, m in zip(made.completion_ids, made.completion_mask)]
        steps.append({"prompts": [p.id for p in prompts], "completions": ids})
        return made

    def recorded_loss(self, model, inputs, num_items=None):
        step = batch_loss(self, model, inputs, num_items)
        steps[-1].update(metrics=step.metrics, weight=step.weight)
        return step

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **_):
            if state.global_step == 0:
                grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
                save_file(grads, str(out / f"grads-{args.process_index}.safetensors"))

        def on_train_end(self, args, state, control, model=None, **_):
            weights = {n: p.detach().clone().contiguous() for n, p in model.state_dict().items()}
            save_file(weights, str(out / f"weights-{args.process_index}.safetensors"))
            (out / f"steps-{args.process_index}.json").write_text(json.dumps(steps))

    def even_tokens(prompts, completions, completion_ids, **_):
        return [sum(t % 2 == 0 for t in ids) / len(ids) for ids in completion_ids]

    grpo.GRPOTrainer.batch_loss, grpo.GRPOTrainer.rollouts = recorded_loss, recorded_rollouts
    config = load_config(grpo.GRPOConfig, sys.argv[1])
    grpo.train_grpo(config, reward_funcs=[even_tokens], callbacks=[Record()], progress=False)
    """
)


# FSDP2: each process shards the tiny model (decoder and vision layers, then the root), samples its two prompts
# through sampling_view, compares with the whole model's completions, then runs one GRPO step on the shards.
FSDP_CHILD = textwrap.dedent(
    """
    import json, sys
    from dataclasses import replace
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel, fully_shard
    from torch.distributed.tensor import DTensor
    from mmalign.config import load_config
    from mmalign.errors import ConfigError
    from mmalign.models import load
    from mmalign.models.examples import Example
    from mmalign.models.prefix import plan_shared
    from mmalign.models.rollout import SamplingOptions, sample_groups
    from mmalign.train import grpo
    from mmalign.train.gathered import _reshard_setting, sampling_view

    def even_tokens(prompts, completions, completion_ids, **_):
        return [sum(t % 2 == 0 for t in ids) / len(ids) for ids in completion_ids]

    out = Path(sys.argv[2])
    config = load_config(grpo.GRPOConfig, sys.argv[1])
    loaded = load(config.model.path)
    trainer = grpo.build_trainer(config, loaded, reward_funcs=[even_tokens])
    rank = trainer.args.process_index
    prompts = [trainer.train_dataset[i] for i in (2 * rank, 2 * rank + 1)]
    root = trainer.train_dataset.root
    items = [Example(p.id, p.prompt, list(p.images)) for p in prompts]
    draws = {"greedy": (SamplingOptions(6, do_sample=False), 3), "sampled": (SamplingOptions(12, temperature=1.5), 1)}
    seed = 11 + rank  # seeds 11 and 12 draw completions of at most 12 and 2 tokens
    whole = {k: sample_groups(loaded, items, g, o, seed=seed, image_root=root) for k, (o, g) in draws.items()}
    model = loaded.model
    layers = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "EncoderLayer"))]
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    report = {"prompts": [p.id for p in prompts], "draws": {}, "layers": len(layers)}
    for name, (options, g) in draws.items():
        forwards = []
        hook = model.register_forward_hook(lambda *_: forwards.append(1))
        with sampling_view(model) as view:
            report["view"] = view.sharding
            sharded = replace(loaded, model=view.module)
            got = sample_groups(sharded, items, g, options, seed=seed, image_root=root, all_done=view.all_done)
        hook.remove()
        same = got.completion_ids.shape == whole[name].completion_ids.shape
        report["draws"][name] = {
            "equal": same and torch.equal(got.completion_ids, whole[name].completion_ids),
            "logps": same and torch.allclose(got.token_logps, whole[name].token_logps, atol=1e-5),
            "width": got.completion_ids.shape[1],
            "forwards": len(forwards),
        }
    report["resharded"] = all(isinstance(p, DTensor) for p in model.parameters())
    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    report["reshards"] = [[info is not None for info in _reshard_setting(m)[1]] for m in modules]
    made = []
    sample = trainer.rollouts
    trainer.rollouts = lambda *args: made.append(sample(*args)) or made[-1]
    step = trainer.batch_loss(model.train(), {"prompts": prompts, "root": root})
    step.loss.backward()
    grads = {n: p.grad.full_tensor().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, str(out / f"grads-{rank}.safetensors"))
    mask = made[0].completion_mask.bool()
    report["completions"] = [row[m].tolist() for row, m in zip(made[0].completion_ids, mask)]
    batch = made[0].batch()  # the update's forward: not the shared-prefix one while gradients flow into shards
    report["plan"] = [plan_shared(model, batch).reason]
    with torch.no_grad():
        report["plan"].append(plan_shared(model, batch).reason)
    try:  # FSDP1 is refused, with the way out
        with sampling_view(FullyShardedDataParallel(torch.nn.Linear(4, 4), device_id=torch.device("cpu"))):
            pass
    except ConfigError as refused:
        report["fsdp1"] = str(refused)
    (out / f"report-{rank}.json").write_text(json.dumps(report))
    """
)


def even_tokens(ids: list[int]) -> float:
    return sum(t % 2 == 0 for t in ids) / len(ids)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("grpo-processes")
    generate_world(root / "world", WorldConfig(train_scenes=8, val_scenes=2, test_scenes=2))
    # The tiny LLaVA with a fifth of its vocabulary as end tokens: completions end at different lengths, so the
    # processes hold different numbers of tokens (which is what the loss normalisation is about) and end their
    # decode loops at different steps.
    model = root / "model"
    model.mkdir()
    for f in tiny_dir("tiny-llava").iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    generation = json.loads((model / "generation_config.json").read_text())
    generation["eos_token_id"] = [1, *range(5, 849, 5)]
    (model / "generation_config.json").write_text(json.dumps(generation))
    config = {
        "kind": "grpo",
        "model": {"path": str(model)},
        "data": {"train": str(root / "world" / "train" / "scenes.jsonl")},
        "train": {
            "output_dir": str(root / "run"),
            "batch_size": 2,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
            "max_grad_norm": 0,  # the recorded gradient is the loss's, not a clipped one
        },
        "grpo": {"group_size": 4, "max_new_tokens": 6, "temperature": 1.5, "scale_rewards": "batch"},
        "loss": {"loss_type": "dapo"},
    }
    (root / "grpo.yaml").write_text(yaml.safe_dump(config))
    return {"root": root, "config": root / "grpo.yaml", "run": root / "run"}


def two_processes(setup: dict[str, Path], child: str, name: str) -> tuple[Path, str]:
    """Runs ``child`` (config path, output folder) in two gloo processes on CPU; its output folder and stdout."""
    out = setup["root"] / name
    out.mkdir()
    (out / "child.py").write_text(child)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(out / "child.py"), str(setup["config"]), str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.fixture(scope="module")
def ddp_run(setup: dict[str, Path]) -> dict[str, Path]:
    out, stdout = two_processes(setup, CHILD, "ddp")
    assert "4 prompts × 4 completions a step" in stdout
    return {**setup, "out": out}


@pytest.fixture(scope="module")
def fsdp_run(setup: dict[str, Path]) -> dict[str, Path]:
    out, _ = two_processes(setup, FSDP_CHILD, "fsdp")
    return {**setup, "out": out}


def recorded(run: dict[str, Path]) -> list[list[dict]]:
    return [json.loads((run["out"] / f"steps-{rank}.json").read_text()) for rank in (0, 1)]


def test_each_process_samples_its_own_prompts_and_the_weights_stay_identical(ddp_run):
    steps = recorded(ddp_run)
    assert [len(s) for s in steps] == [2, 2]
    seen = []
    for step in (0, 1):
        mine, theirs = steps[0][step], steps[1][step]
        assert len(mine["prompts"]) == len(theirs["prompts"]) == 2
        assert not set(mine["prompts"]) & set(theirs["prompts"])
        for made in (mine, theirs):  # a process samples all G = 4 completions of each of its prompts
            assert len(made["completions"]) == 4 * len(made["prompts"])
        seen += mine["prompts"] + theirs["prompts"]
    assert sorted(seen) == [f"train-{i:06d}" for i in range(8)]  # one epoch: every prompt once
    first, second = (load_file(str(ddp_run["out"] / f"weights-{rank}.safetensors")) for rank in (0, 1))
    start = load(load_config(GRPOConfig, ddp_run["config"]).model.path).model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], start[k]) for k in first)  # and they did train


def test_logged_metrics_are_the_means_and_extremes_over_the_processes(ddp_run):
    steps = recorded(ddp_run)
    logged = {r["step"]: r for r in read_metrics(ddp_run["run"] / "metrics.jsonl") if "reward" in r}
    assert sorted(logged) == [1, 2]
    for step in (0, 1):
        a, b = steps[0][step], steps[1][step]
        row = logged[step + 1]
        lengths = [len(c) for c in a["completions"] + b["completions"]]
        assert row["completions/min_length"] == min(lengths) and row["completions/max_length"] == max(lengths)
        assert a["metrics"]["completions/min_length"] == min(lengths)  # every process stores the global extreme
        rewards = [even_tokens(c) for c in a["completions"] + b["completions"]]
        assert row["reward"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-6)
        for key in ("reward", "completions/mean_length", "rewards/even_tokens/std", "frac_reward_zero_std"):
            mean = (a["metrics"][key] * a["weight"] + b["metrics"][key] * b["weight"]) / (a["weight"] + b["weight"])
            assert row[key] == pytest.approx(mean, abs=1e-6), key


def union_gradients(run: dict[str, Path], prompt_ids: list[list[str]], completions: list[list[list[int]]]) -> tuple:
    """The first step's gradient as one process computes it on both processes' rollouts (made again from the
    starting weights with the trainer's seeds, checked equal to ``completions``): advantages with the std over all
    16 rewards (scale_rewards batch), DAPO's sum over every token / all tokens. Also the gradient of each process
    on its own (its advantages, its token mean), averaged."""
    config = load_config(GRPOConfig, run["config"])
    loaded = load(config.model.path)
    prompts = read_prompts(config.data.train, question=config.grpo.prompt)
    by_id = {p.id: p for p in prompts}
    made = []
    for rank in (0, 1):
        items = [Example(i, by_id[i].prompt, list(by_id[i].images)) for i in prompt_ids[rank]]
        seed = derive_seed(config.train.seed, "grpo", 0, rank, 1)
        rollouts = sample_groups(loaded, items, 4, config.grpo.sampling(), seed, image_root=prompts.root)
        mask = rollouts.completion_mask.bool()
        assert [row[m].tolist() for row, m in zip(rollouts.completion_ids, mask, strict=True)] == completions[rank]
        made.append(rollouts)
    tokens = [int(r.completion_mask.sum()) for r in made]
    assert tokens[0] != tokens[1]  # otherwise the normalisations below could not be told apart
    rewards = torch.tensor([even_tokens(c) for r in (0, 1) for c in completions[r]])
    union = group_advantages(rewards, 4, "batch").advantages
    per_process = [group_advantages(mine, 4, "batch").advantages for mine in (rewards[:8], rewards[8:])]
    model = loaded.model.train()

    def gradient(advantages: list[torch.Tensor], denominators: list[float], scale: float) -> dict[str, torch.Tensor]:
        model.zero_grad()
        for rollouts, adv, n in zip(made, advantages, denominators, strict=True):
            width = rollouts.completion_ids.shape[1]
            scorer = tempered(sequence_logps, config.grpo.temperature)  # the update's log-probs are at T, as TRL
            policy = scorer(model, rollouts.batch(), token_level=True).token_logps[:, :width]
            mask = rollouts.completion_mask.float()
            (config.loss(RolloutLogps(policy, mask), adv, num_tokens=n).loss * scale).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    expected = gradient([union[:8], union[8:]], [sum(tokens), sum(tokens)], 1.0)
    return expected, gradient(per_process, tokens, 0.5)


def check_gradients(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], alone: dict) -> None:
    assert got.keys() == expected.keys()
    biggest = max(float(g.abs().max()) for g in expected.values())
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, rtol=1e-4, atol=1e-6 * biggest), name
    apart = max(float((alone[n] - expected[n]).abs().max()) for n in expected)
    assert apart > 1e-3 * biggest  # the per-process normalisation is measurably another update


def test_the_update_is_one_process_on_the_union_of_the_rollouts(ddp_run):
    """DDP's averaged gradient of step 1 equals the gradient one process computes on both processes' rollouts."""
    steps = recorded(ddp_run)
    first = [steps[rank][0] for rank in (0, 1)]
    expected, alone = union_gradients(ddp_run, [s["prompts"] for s in first], [s["completions"] for s in first])
    ddp = [load_file(str(ddp_run["out"] / f"grads-{rank}.safetensors")) for rank in (0, 1)]
    assert all(torch.equal(ddp[0][name], ddp[1][name]) for name in ddp[0])
    check_gradients(ddp[0], expected, alone)


def test_fsdp2_samples_the_whole_models_completions_and_steps_as_one_process(fsdp_run):
    reports = [json.loads((fsdp_run["out"] / f"report-{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["view"] == "fsdp2" and report["layers"] == 5  # 3 decoder layers, 2 vision encoder layers
        for draw in ("greedy", "sampled"):
            assert report["draws"][draw]["equal"] and report["draws"][draw]["logps"], draw
        assert report["resharded"]  # the shards are back, and so are FSDP's own settings: all but the root
        assert report["reshards"] == [[False]] + [[True]] * 5  # reshard after forward
        assert "FSDP1 (FullyShardedDataParallel) model is not supported: use FSDP2" in report["fsdp1"]
        assert report["plan"] == [SHARDED, None]
    # the processes' own completions ended at different steps, yet both ran the prefill and 12 decode forwards:
    # the one that finished first kept stepping until the other had (and dropped those steps)
    assert [r["draws"]["sampled"]["width"] for r in reports] == [12, 2]
    assert [r["draws"]["sampled"]["forwards"] for r in reports] == [13, 13]
    expected, alone = union_gradients(fsdp_run, [r["prompts"] for r in reports], [r["completions"] for r in reports])
    grads = [load_file(str(fsdp_run["out"] / f"grads-{rank}.safetensors")) for rank in (0, 1)]
    check_gradients(grads[0], expected, alone)
    check_gradients(grads[1], expected, alone)
