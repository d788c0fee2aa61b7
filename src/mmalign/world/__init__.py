"""The shapes world: procedural scenes with exact ground truth, the project's embedded default data.

In memory: :func:`sample_scene`, :func:`render`, the text builders in :mod:`mmalign.world.text`.
On disk: :func:`generate_world` (layout documented in :mod:`mmalign.world.generate`), :func:`read_world`.
Moving clips (``mmalign world --video``): :func:`sample_clips` (:mod:`mmalign.world.clips`), :func:`clip_caption`,
:func:`generate_video_world` (layout in :mod:`mmalign.world.video`).
Names are imported lazily (PEP 562), so ``import mmalign.world.config`` stays light for the CLI.
"""

from __future__ import annotations

from mmalign.lazy import lazy_getattr

_EXPORTS = {
    "WorldConfig": "config",
    "WorldSummary": "generate",
    "generate_world": "generate",
    "read_world": "generate",
    "sample_world": "generate",
    "EVAL_TASKS": "items",
    "image_path": "items",
    "scene_from_row": "items",
    "scene_row": "items",
    "render": "draw",
    "Scene": "scene",
    "SceneObject": "scene",
    "absent_partners": "scene",
    "object_types": "scene",
    "partner_of": "scene",
    "partner_pairs": "scene",
    "sample_scene": "scene",
    "sample_split": "scene",
    "CooccurrenceStats": "stats",
    "compute_stats": "stats",
    "reference_caption": "text",
    "clip_caption": "text",
    "event_sentence": "text",
    "Clip": "clips",
    "make_clip": "clips",
    "sample_clips": "clips",
    "VideoSummary": "video",
    "generate_video_world": "video",
    "read_clips": "video",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
