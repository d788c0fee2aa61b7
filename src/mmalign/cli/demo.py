"""``mmalign demo``: the whole pipeline on the embedded shapes world, ending with a measured result.

World → SFT baseline (shipped, or ``--from-scratch``) → evaluation → preference pairs → DPO, DPO + NLL, mDPO,
SimPO and the SFT-on-chosen control from the same baseline on one budget → evaluation of each on the same
held-out scenes → ``OUT/report.md``, ``OUT/results.json``, plots, and the headline (:mod:`mmalign.demo`). Its
options are the fields of :class:`mmalign.demo.settings.DemoSettings` (:mod:`mmalign.cli.options`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from mmalign.cli.options import config_options
from mmalign.demo.settings import DemoSettings


@config_options(DemoSettings)
def demo(values: dict[str, Any]) -> None:
    """Run the whole pipeline on the shapes world and report what alignment changed, with intervals."""
    from rich.console import Console

    from mmalign.demo.pipeline import run_demo
    from mmalign.files import OutputLock

    settings = DemoSettings(**values)
    with contextlib.ExitStack() as locks:
        locks.enter_context(OutputLock(values["out"], "mmalign demo"))
        if settings.export_baseline is not None:
            locks.enter_context(OutputLock.beside(settings.export_baseline, "mmalign demo --export-baseline"))
        run_demo(settings, Console())
