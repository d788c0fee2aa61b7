"""On-policy (iterative) DPO, RLAIF-V style: rounds of sampling from the current policy, ranking, and DPO.

    config = load_config(OnlineDPOConfig, "configs/online_dpo/shapes.yaml")
    result = train_online_dpo(config)          # result.model_dir: the last round's policy

Round r (``online.rounds`` of them) reuses the existing pieces unchanged:

1. **prompts**: the next ``online.prompts_per_round`` prompts of the source, so every round sees new ones: a shapes
   world's split (each scene with the builder's question and its objects as the ground truth) or a JSONL file of
   records (whole lines, in order), written to ``round-<r>/prompts.jsonl``;
2. **pairs**: the ``sample-rank`` builder (:mod:`mmalign.pairs.sample_rank`) samples ``k`` responses per prompt from
   the round's starting policy and ranks them with its scorer (``truth`` by default; ``reward``, ``clip``, ``self``
   or ``judge`` as configured in ``online.sample``), keeping best vs worst: ``round-<r>/pairs.jsonl``;
3. **DPO**: the preference trainer (:mod:`mmalign.train.preference`) from the round's starting policy on those
   pairs, the reference being that starting policy (``loss``, ``reference``, ``train`` as ``mmalign train pref``
   takes them; ``train.max_steps`` per round), into ``round-<r>/train/``.

The trained model starts the next round. A rerun skips the rounds already finished (their ``train_result.json``
and model exist) and resumes an interrupted build. ``online_result.json`` sums up every round: prompts, pairs,
the chosen and rejected scores' means, the training loss and where the model went.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmalign.config import option, section
from mmalign.data.io import read_records
from mmalign.data.records import EvalItem
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path
from mmalign.objects import shapes
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.seeding import derive_seed
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig, check_share_prefix, share_prefix_option
from mmalign.train.preference import LossConfig, PreferenceConfig, train_preference
from mmalign.train.presets import resolve_model_path
from mmalign.train.reference import ReferenceConfig

RESULT = "online_result.json"


@dataclass
class OnlineOptions:
    """Where the prompts come from and how each round samples and ranks."""

    rounds: int = option(2, "Rounds of sample → rank → DPO, each from the previous round's policy.", ge=1)
    prompts_per_round: int = option(64, "New prompts each round (taken in order from the source).", ge=1)
    world: str | None = option(None, "A shapes world: prompts are the scenes of online.split.")
    split: Literal["train", "val", "test"] = option("train", "The world's split the prompts come from.")
    input: str | None = option(None, "Or a JSONL file of records (evaluation items or records with meta.objects).")
    root: str | None = option(None, "Directory the input's image paths are relative to (default: its folder).")
    sample: dict[str, Any] = option(
        {"k": 4, "scorer": "truth"},
        "Options of the sample-rank builder (mmalign data build --strategy sample-rank --show-options), except "
        "model: each round samples from its own starting policy.",
    )

    def __post_init__(self) -> None:
        if (self.world is None) == (self.input is None):
            raise ConfigError("online: give exactly one of online.world (a shapes world) or online.input (records)")
        if "model" in self.sample:
            raise ConfigError("online.sample.model: each round samples from its starting policy; drop the key")


@dataclass
class OnlineDPOConfig:
    """``mmalign train online-dpo``: the policy, the rounds, and the preference training each round runs."""

    kind: Literal["online_dpo"] = option("online_dpo", "Config kind: 'online_dpo' for this trainer.")
    model: ModelConfig = section(ModelConfig, "The policy of the first round.")
    online: OnlineOptions = section(OnlineOptions, "Prompts, sampling and ranking, rounds.")
    train: TrainingConfig = section(TrainingConfig, "Each round's optimisation (output_dir: the run's folder).")
    loss: LossConfig = section(LossConfig, "The preference loss (sigmoid: DPO).")
    reference: ReferenceConfig = section(ReferenceConfig, "The reference: each round's starting policy by default.")
    share_prefix: bool | Literal["auto"] = share_prefix_option()
    max_length: int | None = option(None, "Longest tokenized pair sequence in training (data.max_length).", ge=1)

    def __post_init__(self) -> None:
        check_share_prefix(self.share_prefix, self.model)
        make_builder("sample-rank", dict(self.online.sample))  # unknown or bad options fail now, not in round 0

    def round_config(self, policy: Path, pairs: Path, root: Path, out: Path, r: int) -> PreferenceConfig:
        """The preference training of round ``r``: from ``policy`` on ``pairs``, into ``out``."""
        return PreferenceConfig(
            model=dataclasses.replace(self.model, path=str(policy)),
            data=DataConfig(train=str(pairs), root=str(root), max_length=self.max_length),
            train=dataclasses.replace(
                self.train, output_dir=str(out), seed=derive_seed(self.train.seed, "round", r, bits=31)
            ),
            loss=self.loss,
            reference=self.reference,
            share_prefix=self.share_prefix,
        )


@dataclass
class OnlineDPOResult:
    output_dir: Path
    model_dir: Path
    """The last round's policy."""
    rounds: list[dict[str, Any]]


def source_size(options: OnlineOptions) -> int:
    """How many prompts the source holds (scenes of the world's split, or non-empty lines of the input)."""
    path = Path(options.world) / options.split / "scenes.jsonl" if options.world is not None else Path(options.input)
    if not path.is_file():
        raise ConfigError(f"online: {path} does not exist")
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def check_source(options: OnlineOptions) -> None:
    """Refuse, before any work, a source with fewer prompts than the rounds take."""
    need, held = options.rounds * options.prompts_per_round, source_size(options)
    if held < need:
        raise ConfigError(
            f"online.rounds {options.rounds} × online.prompts_per_round {options.prompts_per_round} = {need} prompts, "
            f"but the source holds {held}: lower one of them"
        )


def round_prompts(options: OnlineOptions, r: int, out: Path) -> tuple[Path, Path, int]:
    """Write round ``r``'s prompts to ``out`` (evaluation items for a world; the input's lines otherwise); returns
    the file, the image root and how many prompts it holds."""
    start, end = r * options.prompts_per_round, (r + 1) * options.prompts_per_round
    if options.world is not None:
        root = Path(options.world)
        scenes = root / options.split / "scenes.jsonl"
        question = options.sample.get("prompt", shapes.DESCRIBE_PROMPT)
        lines = []
        for number, line in enumerate(scenes.read_text(encoding="utf-8").splitlines()[start:end], start + 1):
            try:
                row = json.loads(line)
                item = EvalItem(str(row["id"]), "caption", question, "", [row["image"]], list(row["present"]))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"not a scene row ({err})", file=scenes, line=number) from None
            lines.append(json.dumps(item.to_dict()))
    else:
        source = Path(options.input)  # type: ignore[arg-type]
        root = Path(options.root) if options.root is not None else source.resolve().parent
        if source.suffix.lower() != ".jsonl":
            raise ConfigError(f"online.input must be a JSONL file of records, not {source.name!r}")
        for _ in read_records(source, root=root):  # checked whole once: a bad record fails before round 0
            pass
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()][start:end]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, root, len(lines)


def _finished(folder: Path) -> dict[str, Any] | None:
    """The round's training result when the round finished (its result file and model exist)."""
    result = folder / "train" / "train_result.json"
    if not result.is_file():
        return None
    done = json.loads(result.read_text(encoding="utf-8"))
    model = done.get("model_dir")
    return done if model and (Path(model) / "config.json").is_file() else None


def _pair_summary(pairs: Path) -> dict[str, Any]:
    """How many pairs the round made, and the mean score of their chosen and rejected sides (one read)."""
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return {"pairs": 0}
    chosen = [r["meta"]["chosen_score"] for r in rows]
    rejected = [r["meta"]["rejected_score"] for r in rows]
    return {"pairs": len(rows), "chosen_score": sum(chosen) / len(rows), "rejected_score": sum(rejected) / len(rows)}


def train_online_dpo(
    config: OnlineDPOConfig,
    *,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
) -> OnlineDPOResult:
    """Run the rounds (module docstring); returns the last policy and every round's summary."""
    say = write or (lambda text: print(text, flush=True))
    out = Path(config.train.output_dir)
    policy = resolve_model_path(config.model.path)
    check_source(config.online)
    rounds: list[dict[str, Any]] = []
    for r in range(config.online.rounds):
        folder = out / f"round-{r}"
        done = _finished(folder)
        prompts, root, n_prompts = round_prompts(config.online, r, folder / "prompts.jsonl")
        pairs = folder / "pairs.jsonl"
        if done is None:
            say(f"online-dpo round {r + 1}/{config.online.rounds}: sampling from {policy}")
            builder = make_builder("sample-rank", {**config.online.sample, "model": str(policy)})
            built = run_build(
                builder,
                BuildInputs(input=prompts, root=root),
                pairs,
                seed=derive_seed(config.train.seed, "online", r),
                out_root=root,
            )
            if built.pairs == 0:
                raise DataError(
                    f"round {r}: no pair from {n_prompts} prompts (every prompt's samples scored alike); raise "
                    "online.sample.k or the temperature, or lower min_gap",
                    file=pairs,
                )
            round_config = config.round_config(policy, pairs, root, folder / "train", r)
            result = train_preference(round_config, progress=progress, write=write)
            done = result.to_dict()
        else:
            say(f"online-dpo round {r + 1}/{config.online.rounds}: done before, skipped")
        rounds.append(
            {
                "round": r,
                "policy": str(policy),
                "prompts": n_prompts,
                **_pair_summary(pairs),
                "train_loss": done["train_loss"],
                "steps": done["global_step"],
                "model_dir": done["model_dir"],
            }
        )
        policy = Path(done["model_dir"])
    summary = {"output_dir": str(out), "model_dir": str(policy), "rounds": rounds}
    with atomic_path(out / RESULT) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return OnlineDPOResult(out, policy, rounds)
