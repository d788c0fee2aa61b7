"""docs/options.md is what :mod:`mmalign.cli.reference` generates from the option declarations (never stale)."""

from __future__ import annotations

from pathlib import Path

from mmalign.cli.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "options.md"


def test_the_committed_options_reference_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/options.md is stale: run `python -m mmalign.cli.reference > docs/options.md`"
    )


def test_the_reference_lists_every_command_option_with_its_flag():
    text = render()
    for row in ("| `n_resamples` | `--bootstrap` |", "| `train_scenes` | `--scenes` |", "| `eval_batch_size` |"):
        assert row in text, row
    assert "| `train.learning_rate` | float (> 0) |" in text
    assert "### Loss `mdpo`" in text
