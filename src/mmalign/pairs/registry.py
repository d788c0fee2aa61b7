"""Preference-pair builders and the registry that finds them by strategy name.

A *strategy* is one module holding a :class:`Builder` subclass; :data:`STRATEGIES` maps its name (what
``mmalign data build --strategy NAME`` takes) to ``module:Class``, imported only when used. Adding a
strategy (``sample-rank``, ``adversarial``) is one module and one line here; code outside the package can
also call :func:`register_builder`.

A build has two steps, so that it can be sharded, run in several processes and resumed:

* :meth:`Builder.plan` runs once, in the main process: it reads the inputs and returns a :class:`Plan`,
  the list of independent *units* (JSON-serialisable dicts with an ``id``: a scene, a record, a group of
  scenes) and the state every unit needs (``shared``: statistics, the world's config; picklable).
* :meth:`Builder.build` turns one unit into preference records. It must be a pure function of the unit,
  ``shared``, the options and the unit's seed (``derive_seed(build seed, strategy, unit id)``, from
  :mod:`mmalign.seeding`), so the output does not depend on shard boundaries, process count or interruptions.

Records may name input images by path (relative to ``Plan.in_root``) or carry new images as
:class:`~mmalign.data.records.ImageBlob` / PIL images; the shard writer puts every image under the output
root (:mod:`mmalign.pairs.shards`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmalign.config import config_from_dict, describe
from mmalign.data.records import PreferenceRecord, SFTRecord
from mmalign.errors import ConfigError

STRATEGIES: dict[str, str] = {
    "hallucinate": "mmalign.pairs.hallucinate:HallucinateBuilder",
    "corrupt-image": "mmalign.pairs.corrupt_image:CorruptImageBuilder",
    "multi-image": "mmalign.pairs.multi_image:MultiImageBuilder",
    "sample-rank": "mmalign.pairs.sample_rank:SampleRankBuilder",
    "adversarial": "mmalign.pairs.adversarial:AdversarialBuilder",
    "best-of-n": "mmalign.pairs.best_of:BestOfBuilder",
    "video-hallucinate": "mmalign.pairs.video_hallucinate:VideoHallucinateBuilder",
    "video-corrupt": "mmalign.pairs.video_corrupt:VideoCorruptBuilder",
}
"""Strategy name → ``module:Class`` of its builder (imported on first use)."""

_REGISTERED: dict[str, type[Builder]] = {}


@dataclass(frozen=True)
class BuildInputs:
    """Where a build reads from: a shapes world (``world`` + ``split``) or a data file (``input`` + ``root``)."""

    world: Path | None = None
    """A directory written by ``mmalign world``."""
    split: str = "train"
    """Which split of the world (train, val or test)."""
    input: Path | None = None
    """A data file (or, for COCO-style annotations, a directory); what it must hold depends on the strategy."""
    root: Path | None = None
    """Data root that the input's image paths are relative to (default: the input's folder)."""


@dataclass
class Plan:
    """What :meth:`Builder.plan` found: the units of work and what they share."""

    units: list[dict[str, Any]]
    """One JSON-serialisable dict per unit, each with a unique ``id``, in output order."""
    in_root: Path
    """The data root that image paths in the units (and in the records built from them) are relative to."""
    fingerprint: str
    """A hash of the inputs' content: a resumed build checks that its inputs did not change."""
    shared: Any = None
    """State every unit needs (picklable: sent once to each worker process)."""
    description: str = ""
    """What the units are, for a person: ``2000 scenes of world /data/w (train)``."""


@dataclass
class Builder(ABC):
    """A strategy for making preference pairs without a model (see the module docstring)."""

    name: ClassVar[str]
    options_class: ClassVar[type]
    """A dataclass whose fields (with ``mmalign.config.option`` help texts) are the strategy's options."""
    unit_name: ClassVar[str] = "units"
    """What a unit is, plural, for progress lines (``scenes``, ``records``, ``groups``)."""
    record_kind: ClassVar[str] = "preference"
    """The kind of record :meth:`build` returns (``preference``; ``sft`` for ``best-of-n``), checked on writing."""

    options: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = self.options_class()
        elif not isinstance(self.options, self.options_class):
            raise ConfigError(f"{self.name}: options must be {self.options_class.__name__}")

    @abstractmethod
    def plan(self, inputs: BuildInputs, seed: int) -> Plan:
        """Read the inputs (in the main process) and list the units. Bad input raises DataError/ConfigError.

        ``seed`` is the build seed, for builders whose units are themselves drawn (groups of scenes)."""

    @abstractmethod
    def build(self, unit: dict[str, Any], shared: Any, seed: int) -> list[PreferenceRecord] | list[SFTRecord]:
        """The records of one unit (preference pairs; SFT records for ``best-of-n``); ``seed`` is
        ``derive_seed(build seed, strategy, unit id)``."""


# ------------------------------------------------------------------------------------------- registry


def register_builder(cls: type[Builder]) -> type[Builder]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator)."""
    _REGISTERED[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    """Every strategy that can be built, without importing any builder."""
    return sorted(set(STRATEGIES) | set(_REGISTERED))


def get_builder_class(name: str) -> type[Builder]:
    """The builder class of strategy ``name``; ConfigError naming the known ones if there is none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in STRATEGIES:
        raise ConfigError(f"unknown build strategy {name!r}; choose one of {', '.join(strategy_names())}")
    module_name, class_name = STRATEGIES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    _REGISTERED[name] = cls
    return cls


def make_builder(name: str, options: dict[str, Any] | None = None) -> Builder:
    """A builder of strategy ``name`` with ``options`` (unknown keys and wrong types raise ConfigError)."""
    cls = get_builder_class(name)
    return cls(config_from_dict(cls.options_class, dict(options or {}), f"{name} options"))


def options_help(name: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) of every option of strategy ``name``."""
    return describe(get_builder_class(name).options_class)


def options_dict(builder: Builder) -> dict[str, Any]:
    """A builder's options as plain JSON values (what a build manifest records)."""
    return dataclasses.asdict(builder.options)


def file_fingerprint(*paths: Path) -> str:
    """SHA-256 over the bytes of ``paths`` (in order) and their names: a resumed build checks it."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_choices(values: list[str], allowed: tuple[str, ...], option: str) -> None:
    """Every entry of a list option must be one of ``allowed``, and the list must not be empty."""
    if not values:
        raise ConfigError(f"option {option!r} must not be empty; choose from {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise ConfigError(f"option {option!r}: unknown value {value!r}; choose from {', '.join(allowed)}")


def check_fraction(value: float, option: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"option {option!r} must be between 0 and 1, got {value}")
