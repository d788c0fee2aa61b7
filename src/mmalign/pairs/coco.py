"""Object mentions in a COCO-style caption, located by character offsets (so a ``hallucinate`` edit can be
spanned): objects are named by category names and found with CHAIR's synonym list (``puppy`` → ``dog``). The
annotation files themselves are read by :mod:`mmalign.data.coco`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    """Character span ``[start, end)`` of the words in the caption."""
    object: str
    """The category the words name."""
    plural: bool


# ------------------------------------------------------------------------------------------- mentions


@functools.lru_cache(maxsize=1)
def _vocabulary() -> Any:
    from mmalign.objects.vocabulary import coco_vocabulary

    return coco_vocabulary()


def find_mentions(caption: str) -> list[Mention]:
    """Object mentions in ``caption`` with character offsets: CHAIR's synonyms and two-word names."""
    from mmalign.objects.singular import singularize

    vocab = _vocabulary()
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(caption)]
    singular = [singularize(w) for _, _, w in words]
    out: list[Mention] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and caption[words[i][1] : words[i + 1][0]] == " ":
            pair = f"{singular[i]} {singular[i + 1]}"
            merged = vocab.double_words.get(pair)
            if merged in vocab.synonyms:
                out.append(
                    Mention(words[i][0], words[i + 1][1], vocab.synonyms[merged], singular[i + 1] != words[i + 1][2])
                )
                i += 2
                continue
        if singular[i] in vocab.synonyms:
            out.append(Mention(words[i][0], words[i][1], vocab.synonyms[singular[i]], singular[i] != words[i][2]))
        i += 1
    return out


def plural(name: str) -> str:
    """A plain English plural of a category name (``bus`` → ``buses``, ``sheep`` stays)."""
    if name in ("sheep", "skis", "scissors", "person"):
        return {"person": "people"}.get(name, name)
    head, _, last = name.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    elif last.endswith("knife"):
        last = last[:-2] + "ves"
    else:
        last += "s"
    return f"{head} {last}" if head else last
