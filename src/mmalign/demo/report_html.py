"""``report.html``: report.md's content in one self-contained file, for a browser.

The plots are embedded as base64 ``data:image/png`` URIs and the tables are HTML tables; there is no external
CSS, script, font or image, so the file can be mailed or archived alone. It is written atomically, like every
other output.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from mmalign.demo.report import (
    CONTROL_NOTE,
    PLOTS,
    TIMING_NOTE,
    Table,
    check_table,
    delta_table,
    metric_table,
    model_labels,
    reproduce_commands,
    summary_items,
    timing_table,
)
from mmalign.files import atomic_path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 13px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
td.no { color: #b00; font-weight: bold; }
.wide { overflow-x: auto; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""


NO_CELL = '<td class="no">'


def _table(table: Table, mark_no: bool = False) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join((NO_CELL if mark_no and cell == "no" else "<td>") + f"{html.escape(cell)}</td>" for cell in row)
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="wide"><table>\n<tr>{head}</tr>\n' + "\n".join(body) + "\n</table></div>"


def _image(path: Path, alt: str) -> str:
    """The plot as a data URI, or a line saying it is missing (the report is still written)."""
    if not path.is_file():
        return f"<p>({html.escape(path.name)} was not written)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def html_report(results: dict[str, Any], headline: list[str], seconds: dict[str, float], plots_dir: Path) -> str:
    """The page as a string: the same sections as report.md, plots read from ``plots_dir`` and embedded."""
    labels = model_labels(results)
    title = "mmalign demo: aligning a tiny LLaVA against co-occurrence hallucination"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<ul>",
        *(f"<li>{html.escape(item)}</li>" for item in summary_items(results, seconds)),
        "</ul>",
        "<h2>Headline</h2>",
        "<pre>" + html.escape("\n".join(line for line in headline if line)) + "</pre>",
        "<h2>Every model, every metric</h2>",
        _p("Estimate [95 % interval]; ↑ higher is better, ↓ lower."),
        _table(metric_table(results)),
        _p(
            "Every headline metric of every task, per model: eval/<model>/report.md; all paired deltas: "
            "compare/vs-baseline/compare.md and compare/vs-control/compare.md."
        ),
        "<h2>Change from the baseline (paired)</h2>",
        _table(delta_table(results)),
        "<h2>Against the SFT-on-chosen control</h2>",
        _p(CONTROL_NOTE),
        "<ul>",
        *(f"<li>{html.escape(s)}</li>" for s in results["claims"].values() or ["(no method besides the control)"]),
        "</ul>",
        "<h2>Checks</h2>",
        _p("The baseline must be competent and still hallucinate:"),
        _table(check_table(results["criteria"]["baseline"]), mark_no=True),
    ]
    for name, checks in results["criteria"]["methods"].items():
        parts += [_p(f"{labels[name]} against the goal:"), _table(check_table(checks), mark_no=True)]
    parts += ["<h2>Plots</h2>", *(_image(plots_dir / file, alt) for file, alt in PLOTS)]
    parts += ["<h2>Timings</h2>", _p(TIMING_NOTE), _table(timing_table(seconds))]
    parts += ["<h2>Reproduce</h2>", "<pre>" + html.escape("\n".join(reproduce_commands(results))) + "</pre>"]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def write_html(
    results: dict[str, Any], headline: list[str], seconds: dict[str, float], plots_dir: Path, path: Path
) -> None:
    """Write :func:`html_report` to ``path`` atomically (a temporary file beside it, then a rename)."""
    text = html_report(results, headline, seconds, plots_dir)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
