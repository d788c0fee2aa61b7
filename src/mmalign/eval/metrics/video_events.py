"""Events a video caption states, and their precision and recall against a clip's ground-truth events.

A caption states an event when a clause names an event verb and an object: the clause's first object mention
(found as CHAIR finds mentions, :mod:`mmalign.objects.mentions`) is the event's object, its first event verb
the event's type. Clauses are the caption split at ``. ! ? ; ,`` and at the words *and*, *then*, *while*,
*after*, *before*. The verbs (any tense):

    appear         appears, appeared, emerges, shows up
    disappear      disappears, vanishes, is gone, goes away (not *leaves*: *left* is also a place)
    move           moves, slides, goes (up / down / left / right)
    change_colour  turns, changes, becomes

So "The red circle disappears, then a green square appears." states (disappear, red circle) and (appear, green
square); "The blue star turns green." states (change_colour, blue star). A clip's events are the set of its
ground-truth ``(type, object)`` pairs (an object that changed colour keeps its name before the change, the
name its event carries). Per clip, *stated* = the caption's set of events, *true* = the clip's; micro-averaged
over clips, event precision = Σ |stated ∩ true| / Σ |stated| and event recall = Σ |stated ∩ true| / Σ |true|
(0 where a sum is 0), F1 their harmonic mean. A stated event not in the clip is an *invented* event (wrong
type, wrong object, or nothing happened to it). Order and frame are not scored here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmalign.objects.mentions import extract_mentions
from mmalign.objects.vocabulary import ObjectVocabulary

EVENT_TYPES: tuple[str, ...] = ("appear", "disappear", "move", "change_colour")

VERBS: dict[str, re.Pattern[str]] = {
    "disappear": re.compile(r"\b(disappear\w*|vanish\w*|is gone|goes away|went away)\b"),
    "appear": re.compile(r"\b(appear(s|ed|ing)?|emerge[sd]?|emerging|shows up|showed up|show up)\b"),
    "change_colour": re.compile(r"\b(turn(s|ed|ing)?|chang(e|es|ed|ing)|becom(e|es|ing)|became)\b"),
    "move": re.compile(r"\b(mov(e|es|ed|ing)|slid(e|es|ing)?|goes (up|down|left|right)|went (up|down|left|right))\b"),
}

_CLAUSES = re.compile(r"[.!?;,]|\b(?:and|then|while|after|before)\b")


def stated_events(caption: str, vocab: ObjectVocabulary) -> set[tuple[str, str]]:
    """The ``(type, object)`` events ``caption`` states (see the module docstring)."""
    events = set()
    for clause in _CLAUSES.split(caption.lower()):
        if not clause or not clause.strip():
            continue
        mentions = extract_mentions(clause, vocab)
        found = [(m.start(), kind) for kind, pattern in VERBS.items() if (m := pattern.search(clause))]
        if mentions and found:
            events.add((min(found)[1], mentions[0].object))
    return events


def true_events(events: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """A clip's ground-truth events as ``(type, object)`` pairs."""
    return {(str(e["type"]), str(e["object"])) for e in events}


def event_row(caption: str, events: Iterable[Mapping[str, Any]], vocab: ObjectVocabulary) -> dict[str, Any]:
    """One caption's event counts: stated, true, matched, and the invented and missed events."""
    stated, truth = stated_events(caption, vocab), true_events(events)
    return {
        "events_stated": len(stated),
        "events_true": len(truth),
        "events_matched": len(stated & truth),
        "invented_events": sorted(list(e) for e in stated - truth),
        "missed_events": sorted(list(e) for e in truth - stated),
    }


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def event_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Micro-averaged event precision, recall and F1 of :func:`event_row` outputs."""
    stated = sum(r["events_stated"] for r in rows)
    truth = sum(r["events_true"] for r in rows)
    matched = sum(r["events_matched"] for r in rows)
    precision, recall = ratio(matched, stated), ratio(matched, truth)
    return {
        "event_precision": precision,
        "event_recall": recall,
        "event_f1": ratio(2 * precision * recall, precision + recall),
        "events_stated": stated,
        "events_true": truth,
        "events_matched": matched,
        "captions_with_invented_events": sum(1 for r in rows if r["events_stated"] > r["events_matched"]),
    }
