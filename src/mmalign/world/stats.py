"""Co-occurrence statistics of sampled scenes, and the negative rankings POPE builds from them.

POPE (Li et al., 2023, "Evaluating Object Hallucination in Large Vision-Language Models") asks about
absent objects sampled three ways: *random*; *popular*, the most frequent objects of the dataset that are
absent from the image; *adversarial*, the absent objects that co-occur most often with the present ones.
Rankings here use the train split's statistics (what a model learned from).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from mmalign.world.config import WorldConfig
from mmalign.world.scene import Scene, absent_partners, object_types, partner_of


@dataclass
class CooccurrenceStats:
    """Counts over a set of scenes: each is per scene (an object counts once per scene)."""

    types: tuple[str, ...]
    scenes: int = 0
    object_counts: Counter[str] = field(default_factory=Counter)
    """Scenes containing each object type."""
    pair_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Scenes containing both types of an unordered pair (key sorted by type order)."""
    objects_per_scene: Counter[int] = field(default_factory=Counter)
    partner_trials: int = 0
    partner_added: int = 0
    with_absent_partner: int = 0
    """Scenes where a present object's partner is absent (where co-occurrence invites hallucination)."""

    def __post_init__(self) -> None:
        self._order = {t: i for i, t in enumerate(self.types)}

    def _pair(self, a: str, b: str) -> tuple[str, str]:
        return (a, b) if self._order[a] <= self._order[b] else (b, a)

    def add(self, scene: Scene) -> None:
        names = sorted(set(scene.names), key=self._order.__getitem__)
        self.scenes += 1
        self.objects_per_scene[len(scene.objects)] += 1
        self.object_counts.update(names)
        self.pair_counts.update(combinations(names, 2))
        self.partner_trials += scene.partner_trials
        self.partner_added += scene.partner_added

    def cooccur(self, a: str, b: str) -> int:
        return self.pair_counts[self._pair(a, b)] if a != b else self.object_counts[a]

    def p_given(self, b: str, a: str) -> float:
        """P(b present | a present), 0 if a never appears."""
        n = self.object_counts[a]
        return self.cooccur(a, b) / n if n else 0.0

    def popular_absent(self, present: list[str]) -> list[str]:
        """Absent types, most frequent first (ties: type order)."""
        absent = [t for t in self.types if t not in present]
        return sorted(absent, key=lambda t: (-self.object_counts[t], self._order[t]))

    def adversarial_absent(self, present: list[str]) -> list[str]:
        """Absent types, most co-occurring with the present ones first (ties: frequency, then type order)."""
        absent = [t for t in self.types if t not in present]
        score = {t: sum(self.cooccur(p, t) for p in present) for t in absent}
        return sorted(absent, key=lambda t: (-score[t], -self.object_counts[t], self._order[t]))

    def summary(self, cfg: WorldConfig) -> dict[str, Any]:
        """The JSON form written to ``world.json``."""
        partners = partner_of(cfg)
        n_objects = sum(k * v for k, v in self.objects_per_scene.items())
        others = [
            self.p_given(b, a)
            for a in self.types
            for b in self.types
            if a != b and partners.get(a) != b and self.object_counts[a]
        ]
        pairs = sorted(self.pair_counts.items(), key=lambda kv: (-kv[1], self._order[kv[0][0]], self._order[kv[0][1]]))
        return {
            "scenes": self.scenes,
            "objects_per_scene": {str(k): self.objects_per_scene[k] for k in sorted(self.objects_per_scene)},
            "mean_objects": round(n_objects / self.scenes, 4) if self.scenes else 0.0,
            "object_frequency": {t: self.object_counts[t] for t in self.types},
            "pair_cooccurrence": [
                {"a": a, "b": b, "count": n, "partners": partners.get(a) == b} for (a, b), n in pairs
            ],
            "p_partner_given_object": {t: round(self.p_given(partners[t], t), 4) for t in self.types if t in partners},
            "p_other_given_object_mean": round(sum(others) / len(others), 4) if others else 0.0,
            "scenes_with_absent_partner": self.with_absent_partner,
            "partner_trials": self.partner_trials,
            "partner_added": self.partner_added,
            "partner_rate": round(self.partner_added / self.partner_trials, 4) if self.partner_trials else None,
        }


def compute_stats(scenes: list[Scene], cfg: WorldConfig) -> CooccurrenceStats:
    stats = CooccurrenceStats(object_types(cfg))
    for scene in scenes:
        stats.add(scene)
        stats.with_absent_partner += bool(absent_partners(scene, cfg))
    return stats
