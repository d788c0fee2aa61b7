"""``mmalign video-study``: does video DPO reduce temporal hallucination on the moving shapes world, beyond SFT on
the same captions (the control)? World → video baseline → pairs → DPO and control on one budget → video tasks →
paired comparisons → ``OUT/report.md``, ``OUT/results.json`` (:mod:`mmalign.demo.video_study`). Its options are
the fields of :class:`mmalign.demo.video_study.VideoStudySettings` (:mod:`mmalign.cli.options`).
"""

from __future__ import annotations

from typing import Any

from mmalign.cli.options import config_options
from mmalign.demo.video_study import VideoStudySettings


@config_options(VideoStudySettings)
def video_study(values: dict[str, Any]) -> None:
    """Video DPO against its baseline and against SFT on the chosen captions, on the video tasks, with intervals."""
    from rich.console import Console

    from mmalign.demo.video_study import run_video_study
    from mmalign.files import OutputLock

    console = Console()
    with OutputLock(values["out"], "mmalign video-study"):
        run_video_study(VideoStudySettings(**values), lambda text: console.print(text, highlight=False, soft_wrap=True))
