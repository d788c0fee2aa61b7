"""Stage 2: the model layer, the only way other stages touch models.

    loaded = load("out/tiny-llava")                       # model + processor + family
    batch = loaded.collator()(records)                     # padded inputs, labels on response tokens
    logps = preference_logps(loaded.model, batch)          # chosen/rejected sums, means, counts; one forward
    texts = generate(loaded, eval_items, max_new_tokens=16)

Tiny offline models: :func:`save_tiny` / ``mmalign model init`` (``tiny-llava`` is the project default).
Names are imported lazily (PEP 562), so ``import mmalign.models.tiny`` does not import torch.
"""

from __future__ import annotations

from mmalign.lazy import lazy_getattr

_EXPORTS = {
    "IGNORE": "collate",
    "Batch": "collate",
    "Collator": "collate",
    "collate": "collate",
    "Example": "examples",
    "examples_from": "examples",
    "generate": "generation",
    "LoadedModel": "loading",
    "LoadOptions": "loading",
    "LoraOptions": "loading",
    "check_model_dir": "loading",
    "load": "loading",
    "LogpOutput": "logps",
    "PreferenceLogps": "logps",
    "preference_logps": "logps",
    "sequence_logps": "logps",
    "ARCHS": "tiny",
    "DEFAULT_PRESET": "tiny",
    "PRESETS": "tiny",
    "TinySpec": "tiny",
    "build_tiny": "tiny",
    "ensure_preset": "tiny",
    "save_tiny": "tiny",
    "spec_for": "tiny",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
