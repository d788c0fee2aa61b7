"""Multiple-choice answer extraction and accuracy, MMMU style (Yue et al., 2024, ``parse_multi_choice_response``).

Extraction (:func:`parse_choice`), in the official order:

1. strip the characters ``, . ! ? ; : '`` from both ends, one character kind after the other in that order
   (``"B.,"`` → ``"B."`` → ``"B"``, but ``"B,."`` → ``"B,"``, whose letter is then not found), then pad
   with one space on each side;
2. candidates are letters written ``(B)``; if none, letters standing alone between spaces (`` B ``, case
   sensitive, so the article "A" in "A dog..." counts as option A, as in MMMU);
3. if still none and the response has more than 5 words, options whose text appears in it (case-insensitive);
4. several candidates: the one whose form (``(B)``, `` B `` or the option text) occurs *last* wins;
5. none: the item is *unparsed* (see below).

``strict=True`` stops after step 2: only an explicit letter counts, never the option text.

Unparsed answers, two rules (:func:`mc_metrics`):

* ``random_seed=None``, the default: an unparsed answer is wrong. A score should not move with a random draw,
  and a model that names no option has not chosen one.
* ``random_seed=N``: MMMU's rule. MMMU draws ``random.choice(all_choices)`` for each unparsed answer from
  Python's generator seeded once (``random.seed(42)`` when ``eval_utils`` is imported), in the order it parses
  the answers: subjects in its ``CAT_SHORT2LONG`` order (alphabetical), records in file order. Here one
  ``random.Random(N)`` draws, in the order of the answers given, from the item's letters in their order, so
  ``N = 42`` with MMMU's files in sorted path order gives MMMU's letters and its number (Qwen-VL's example
  outputs: 319/847 = 0.377 against 303/847 = 0.358 by the default rule).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def options_by_letter(options: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``["cat", "dog"]`` → ``{"A": "cat", "B": "dog"}``; a mapping is returned as a dict unchanged."""
    if isinstance(options, Mapping):
        return dict(options)
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options, got {len(options)}")
    return {LETTERS[i]: text for i, text in enumerate(options)}


def parse_choice(response: str, options: Sequence[str] | Mapping[str, str], strict: bool = False) -> str | None:
    """The option letter a free-form ``response`` picks, or None (see the module docstring)."""
    by_letter = options_by_letter(options)
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    padded = f" {response} "
    forms = [f"({letter})" for letter in by_letter]
    candidates = [letter for letter, form in zip(by_letter, forms, strict=True) if form in padded]
    if not candidates:
        forms = [f" {letter} " for letter in by_letter]
        candidates = [letter for letter, form in zip(by_letter, forms, strict=True) if form in padded]
    text_match = False
    if not candidates and not strict and len(padded.split()) > 5:
        lowered = padded.lower()
        candidates = [letter for letter, text in by_letter.items() if text.lower() in lowered]
        text_match = True
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if text_match:
        lowered = padded.lower()
        starts = [lowered.rfind(by_letter[letter].lower()) for letter in candidates]
    else:
        form_of = dict(zip(by_letter, forms, strict=True))
        starts = [padded.rfind(form_of[letter]) for letter in candidates]
    return candidates[starts.index(max(starts))]  # first maximum, like numpy.argmax


@dataclass
class MCResult:
    n: int
    n_correct: int
    n_unparsed: int
    accuracy: float
    predictions: list[str | None] = field(repr=False)
    """The letter scored for each answer: the parsed one, the drawn one (seeded rule) or None."""
    parsed: list[str | None] = field(repr=False)
    """The letter parsing found, None where it found none."""

    def metrics(self) -> dict[str, float | int]:
        out = asdict(self)
        out.pop("predictions")
        out.pop("parsed")
        return out


def mc_metrics(
    responses: Sequence[str],
    options: Sequence[Sequence[str] | Mapping[str, str]],
    answers: Sequence[str | Sequence[str]],
    strict: bool = False,
    random_seed: int | None = None,
) -> MCResult:
    """Accuracy of ``responses``; an answer is a letter or a list of accepted letters (MMMU allows lists).

    ``random_seed``: None scores an unparsed answer wrong; a seed draws a letter for it (MMMU's rule, see the
    module docstring), in the order of ``responses``.
    """
    if not len(responses) == len(options) == len(answers):
        raise ValueError("responses, options and answers must have the same length")
    rng = random.Random(random_seed) if random_seed is not None else None
    preds: list[str | None] = []
    parsed: list[str | None] = []
    correct = 0
    for response, opts, answer in zip(responses, options, answers, strict=True):
        found = parse_choice(response, opts, strict=strict)
        pred = found
        if found is None and rng is not None:
            pred = rng.choice(list(options_by_letter(opts)))
        parsed.append(found)
        preds.append(pred)
        accepted = [answer] if isinstance(answer, str) else list(answer)
        correct += pred is not None and pred in accepted
    n = len(responses)
    unparsed = parsed.count(None)
    return MCResult(
        n=n,
        n_correct=correct,
        n_unparsed=unparsed,
        accuracy=correct / n if n else 0.0,
        predictions=preds,
        parsed=parsed,
    )
