"""Prompts for online RL: what ``mmalign train grpo`` samples completions for, with the columns rewards read.

Two sources:

* **records** (any file mmalign reads): each record's prompt and images (an SFT or preference record's ``prompt``;
  an evaluation item's question after its images). Its columns, handed to every reward function as keyword
  lists (TRL's ``reward_funcs`` convention), are the record's ``meta`` entries, and for an evaluation item also
  ``answer``, ``objects``, ``choices`` and ``task``;
* **a shapes-world split** (``<world>/<split>/scenes.jsonl``): each scene's image with one fixed question
  (``grpo.prompt``, "Describe the image." by default); columns ``objects`` (the names of the objects present),
  ``scene`` (the scene row: every object's colour, shape, size, position and box) and ``answer`` (the clean
  caption, when the world has one for the scene).

Image paths are relative to ``data.root`` (default: the data file's directory; for a world split, the world).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmalign.data.io import read_records
from mmalign.data.records import EvalItem, Message, response_text, user_prompt
from mmalign.errors import ConfigError, DataError

EVAL_COLUMNS = ("task", "answer", "objects", "choices")


@dataclass
class Prompt:
    """One prompt to sample a group of completions for."""

    id: str
    prompt: list[Message]
    images: list[Any] = field(default_factory=list)
    columns: dict[str, Any] = field(default_factory=dict)
    """What reward functions receive about this prompt besides the prompt itself (ground truth, answers...)."""


class PromptDataset(Dataset):
    """A list of :class:`Prompt` and the directory their image paths are relative to."""

    def __init__(self, prompts: list[Prompt], root: Path, source: str) -> None:
        if not prompts:
            raise ConfigError(f"{source}: no prompts to train on")
        self.prompts, self.root, self.source = prompts, root, source

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> Prompt:
        return self.prompts[index]

    @property
    def column_names(self) -> list[str]:
        """Every column some prompt has (a prompt without one gives None for it)."""
        return sorted({name for p in self.prompts for name in p.columns})


def is_world_split(path: Path) -> bool:
    """Whether ``path`` is a shapes-world split's scene file (``<world>/<split>/scenes.jsonl``)."""
    return path.name == "scenes.jsonl" and (path.parent.parent / "world.json").is_file()


def read_prompts(
    path: str | Path, root: str | Path | None = None, question: str = "Describe the image.", limit: int | None = None
) -> PromptDataset:
    """The prompts of a record file or of a world split (module docstring); ``limit``: the first N."""
    path = Path(path)
    if is_world_split(path):
        return _world_prompts(path, Path(root) if root is not None else path.parent.parent, question, limit)
    base = Path(root) if root is not None else path.resolve().parent
    prompts: list[Prompt] = []
    for record in read_records(path, root=base):
        if limit is not None and len(prompts) >= limit:
            break
        if isinstance(record, EvalItem):
            columns = {"task": record.task, "answer": record.answer, "objects": list(record.objects)}
            columns["choices"] = record.choices
            prompt = user_prompt(record.question, len(record.images))
        else:
            columns, prompt = {}, record.prompt
        for key, value in record.meta.items():
            columns.setdefault(key, value)
        prompts.append(Prompt(record.id, prompt, list(record.images), columns))
    return PromptDataset(prompts, base, str(path))


def _world_prompts(path: Path, root: Path, question: str, limit: int | None) -> PromptDataset:
    captions = _clean_captions(path.parent / "captions_clean.jsonl")
    prompts: list[Prompt] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(prompts) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON: {err.msg}", file=path, line=number) from None
            for key in ("id", "image", "present"):
                if key not in row:
                    raise DataError("missing field of a scene row", file=path, line=number, field=key)
            columns = {"objects": list(row["present"]), "scene": row, "answer": captions.get(row["id"])}
            prompts.append(Prompt(str(row["id"]), user_prompt(question, 1), [row["image"]], columns))
    return PromptDataset(prompts, root, f"{path} (question {question!r})")


def _clean_captions(path: Path) -> dict[str, str]:
    """Scene id → its clean caption, from the split's ``captions_clean.jsonl`` when there is one."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for record in read_records(path, root=path.parent.parent, check_images="none"):
        completion = getattr(record, "completion", None)
        scene = record.meta.get("scene_id", record.id)
        if completion:
            out[str(scene)] = response_text(completion)
    return out
