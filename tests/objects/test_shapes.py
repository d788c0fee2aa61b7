"""The tokenizer corpus covers every token the world emits."""

from __future__ import annotations

import json
import re

from mmalign.objects.shapes import POSITIONS, position_name, tokenizer_corpus
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            t
            for k, v in value.items()
            if k not in ("id", "images", "image", "meta", "key", "type", "task", "source", "role", "via")
            for t in _texts(v)
        ]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def test_corpus_covers_every_word_of_a_generated_world(tmp_path):
    # Every colour and shape, a 4x4 grid, up to 10 objects; sizes on.
    cfg = WorldConfig(
        n_colours=8,
        n_shapes=8,
        grid_rows=4,
        grid_cols=4,
        max_objects=10,
        image_size=32,
        train_scenes=150,
        val_scenes=40,
        test_scenes=40,
    )
    root = generate_world(tmp_path / "w", cfg).out_dir
    corpus = list(tokenizer_corpus(cfg.n_colours, cfg.n_shapes))
    words = {w for line in corpus for w in line.split()}
    pieces = {p for line in corpus for p in re.findall(r"\w+|[^\w\s]", line)}
    seen: set[str] = set()
    for path in root.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            for text in _texts(json.loads(line)):
                seen.update(text.split())
                assert set(re.findall(r"\w+|[^\w\s]", text)) <= pieces, text
    missing = seen - words
    assert not missing, sorted(missing)[:20]
    assert {"circle,", "heart.", "Yes.", "Ten.", "Middle right.".split()[0], "B."} <= words


def test_corpus_defaults_cover_every_colour_shape_and_position():
    words = {w.strip(".,?") for line in tokenizer_corpus() for w in line.split()}
    assert {"cyan", "hexagon", "hearts", "crosses", "Orange", "zero", "ten", "please"} <= words
    assert {position_name(r, c, 5, 5) for r in range(5) for c in range(5)} == set(POSITIONS)
