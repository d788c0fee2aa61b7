"""Open (short-answer) questions scored by MMMU's rule (Yue et al., 2024; ``parse_open_response`` and
``eval_open`` in MMMU-Benchmark/MMMU ``eval/eval_utils.py``, the same in ``mmmu/utils/eval_utils.py``).

What a response offers as its answer (:func:`open_candidates`):

1. the response is stripped of white space, then of dots, lower-cased and cut into lines (MMMU also means to
   cut after ". " before a capital letter, but it lower-cases first, so only line breaks cut);
2. in each line, the tail after the last occurrence of a key phrase (``could be``, ``so``, ``is``, ``thus``,
   ``therefore``, ``final``, ``answer``, ``result``, each followed by a space; in the last line ``=`` too),
   stripped; of the phrases present, the shortest tail wins, except that an empty tail gives way to the
   next phrase's. A tail that is empty or one punctuation mark is dropped. No tail in any line: the whole
   (stripped, lower-cased) response is the one tail;
3. the candidates are the tails and every number written in them (:func:`numbers_in`);
4. each candidate is normalised (:func:`normalize`).

A response is right (:func:`open_correct`) when a numeric candidate equals a normalised numeric answer, or a
normalised text answer occurs inside a text candidate. An answer may be a list of accepted answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

KEY_PHRASES = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
"""Phrases after which a line states its answer; the last line also accepts ``=`` (an equation)."""
TRIVIAL_TAILS = (":", ",", ".", "!", "?", ";", "'")

# Three number shapes, searched independently (a number may be found by two of them: duplicates are harmless).
_GROUPED = re.compile(r"-? \b \d{1,3} (?: , \d{3} )+ \b", re.VERBOSE)  # 1,234,567
_SCIENTIFIC = re.compile(r"-? \d+ (?: \.\d+ )? [eE] [+-]? \d+", re.VERBOSE)  # 1.5e-3
_PLAIN = re.compile(
    r"""-? (?: \d+\.\d+ | \.\d+ | \d+\b )  # 12.5, .5 or 12
        (?! [eE][+-]?\d+ )                # not the mantissa of 1.5e-3
        (?! [,\d] )                       # not the head of 1,234""",
    re.VERBOSE,
)

Normalized = float | str


def normalize(text: str) -> list[Normalized]:
    """A number (commas ignored, anything ``float`` reads) → ``[value rounded to 2 decimals]``; other text →
    ``[lower-cased text]``, and one character ``x`` → ``[" x", "x "]`` so that it only matches at a word edge."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        pass
    text = text.lower()
    return [f" {text}", f"{text} "] if len(text) == 1 else [text]


def numbers_in(text: str) -> list[str]:
    """Every number written in ``text``: grouped by commas, in scientific notation, or plain."""
    return _GROUPED.findall(text) + _SCIENTIFIC.findall(text) + _PLAIN.findall(text)


def _tail(line: str, phrases: Sequence[str]) -> str | None:
    best: str | None = None
    for phrase in phrases:
        if phrase in line:
            tail = line.rsplit(phrase, 1)[-1].strip()
            if not best or len(tail) < len(best):
                best = tail
    return best


def answer_tails(response: str) -> list[str]:
    """Steps 1 and 2 of the module docstring: the parts of a response that state its answer."""
    text = response.strip().strip(".").lower()
    lines = text.split("\n")
    tails = []
    for k, line in enumerate(lines):
        phrases = (*KEY_PHRASES, "=") if k == len(lines) - 1 else KEY_PHRASES
        tail = _tail(line, phrases)
        if tail and tail not in TRIVIAL_TAILS:
            tails.append(tail)
    return tails or [text]


def open_candidates(response: str) -> list[Normalized]:
    """The normalised answers a response offers (each once, in the order found)."""
    tails = answer_tails(response)
    raw = tails + [number for tail in tails for number in numbers_in(tail)]
    out: list[Normalized] = []
    for text in raw:
        for value in normalize(text):
            if value not in out:
                out.append(value)
    return out


def open_correct(answer: str | Sequence[str], response: str) -> bool:
    """MMMU's ``eval_open``: a numeric candidate equal to a numeric answer, or a text answer inside a text
    candidate (``answer``: one accepted answer, or a list of them)."""
    accepted = [answer] if isinstance(answer, str) else list(answer)
    golds = [value for text in accepted for value in normalize(text)]
    numbers = [g for g in golds if isinstance(g, float)]
    texts = [g for g in golds if isinstance(g, str)]
    for candidate in open_candidates(response):
        if isinstance(candidate, str):
            if any(text in candidate for text in texts):
                return True
        elif candidate in numbers:
            return True
    return False
