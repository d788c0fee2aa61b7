"""``mmalign demo``: the whole pipeline on the embedded shapes world, with a measured result.

    run = run_demo(DemoSettings(out=Path("demo-out"), seed=0))
    print("\\n".join(run.headline))

* :mod:`.pipeline`: the steps (world, baseline, evaluation, pairs, training, report), each resumable;
* :mod:`.settings`: the options, the compared methods and the ``--quick`` profile;
* :mod:`.checkpoint`: the shipped SFT baseline (locate, verify, export);
* :mod:`.pairs`, :mod:`.training`: the training data and the methods' configs and runs;
* :mod:`.report`, :mod:`.report_html`, :mod:`.plots`, :mod:`.headline`: results.json, report.md, report.html,
  the PNGs and what is claimed.

Two smaller studies are built from the same pieces: :mod:`.rm_study` (``mmalign rm study``) and
:mod:`.video_study` (``mmalign video-study``: video DPO against its SFT-on-chosen control, report in
:mod:`.video_report`).

Names are imported lazily (PEP 562), so importing the package does not import torch.
"""

from __future__ import annotations

from mmalign.lazy import lazy_getattr

_EXPORTS = {
    "DemoSettings": "settings",
    "METHODS": "settings",
    "DemoRun": "pipeline",
    "run_demo": "pipeline",
    "headline_lines": "headline",
    "verify": "checkpoint",
    "shipped_dir": "checkpoint",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
