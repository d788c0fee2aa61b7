"""The scoring fast path: pick an answer option from the model's log-probs instead of generating and parsing.

Yes/no and multiple-choice questions have a closed set of answers. Greedy generation answers them with its
first token(s) ("Yes" then "." then the end of the turn), so the option it would write can be read from one
forward pass over the prompt: the next-token log-probs at the prompt's last position, compared over the
options' first tokens. This is lmms-eval's ``loglikelihood`` idea, restricted to what greedy decoding would
do, so the two agree whenever generation starts with an option (the runner measures the agreement).

Generation need not start with an option: a model never taught to answer "Is the square red?" with yes or no
may greedily write "Triangle." or "C.", which the task's parser reads as no answer (MME: *other*, wrong), while
a comparison of the options' log-probs alone would still pick yes or no. That is why the shipped SFT baseline's
fast path agreed with generate-and-parse on only 75.2 % of the shapes world's MME items. Each choice therefore
says whether it is on the greedy path (:attr:`OptionChoice.greedy`): the option's token is the highest-scoring
token of the whole vocabulary at every step of the walk, not only among the options' tokens. When it is not,
the runner generates that item's answer instead, so the fast path agrees with generation on its first tokens by
construction; what it can still miss is a continuation the parser reads differently ("No one..." read as *no*
by one parser and *yes* by another, "Yes, but no..."), which the measured agreement counts.

Each option has *forms*, the ways a model may start it: its text as written (``Yes``, ``B``), lower- and
capitalised, for letters also opened by a parenthesis (``(B``), each with and without a leading space
(templates that end with ``ASSISTANT:`` make models answer with a space first). The choice follows the
greedy decoder through the forms' tokens:

1. the form first token with the highest log-prob wins; if the forms starting with that token all belong to
   one option, that option is the answer (one forward pass: yes/no, option letters);
2. otherwise (options sharing a first token, e.g. ``top left`` / ``top right``) the remaining candidate forms
   are scored token by token in a second forward over prompt + form, and the greedy walk continues: at each
   depth the candidates whose next token has the highest log-prob survive. Candidates that end before the
   others compete on their summed log-prob.

The prompt is the model's chat template with the generation prompt, exactly what
:func:`mmalign.models.generate` feeds the model (same collator, left padding), so the first-step log-probs
equal generation's own to float precision.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmalign.data.records import EvalItem
from mmalign.errors import ConfigError
from mmalign.models.collate import PER_TOKEN, Batch, Collator
from mmalign.models.loading import LoadedModel


@dataclass(frozen=True)
class OptionSet:
    """The closed answer set of a question."""

    labels: tuple[str, ...]
    """What the task's parser returns for each option (``yes``/``no``, ``A``...)."""
    texts: tuple[str, ...]
    """What is written as the answer when the option is picked (``Yes``, ``No``, ``A``)."""
    templates: tuple[str, ...] = ("{}",)
    """How an answer may wrap the option: ``("{}", "({})")`` also accepts ``(B)`` for ``B``."""

    def forms(self, index: int) -> list[str]:
        """Surface forms of option ``index``: as written, lower-case, capitalised, in each template; each with a
        leading space too."""
        text = self.texts[index]
        cases = dict.fromkeys((text, text.lower(), text[:1].upper() + text[1:]))
        bare = list(dict.fromkeys(t.format(c) for t in self.templates for c in cases))
        return bare + [" " + form for form in bare]


YES_NO = OptionSet(("yes", "no"), ("Yes", "No"))


def letter_options(n: int) -> OptionSet:
    """Option letters A, B, ... for ``n`` choices (MMMU style: the answer is the letter, ``B`` or ``(B)``; a model
    that opens with ``(`` costs a second forward pass to read the letter after it)."""
    if not 2 <= n <= 26:
        raise ConfigError(f"a multiple-choice question needs 2 to 26 options, got {n}")
    letters = tuple(chr(ord("A") + i) for i in range(n))
    return OptionSet(letters, letters, ("{}", "({}"))


@dataclass
class OptionChoice:
    """The option the fast path picked for one item."""

    index: int
    label: str
    text: str
    logps: list[float]
    """Per option, the best log-prob of its forms' first token (the greedy decoder's first-step view)."""
    margin: float
    """Log-prob of the picked first token minus the best first token of another option (≥ 0; small = a near tie)."""
    forwards: int
    """Forward passes this item needed: 1, or 2 when options shared a first token."""
    greedy: bool = True
    """Whether greedy decoding writes this option's tokens: each was the vocabulary's highest-scoring token
    (False: generation starts with something else, and only generating tells what the parser reads)."""


def _keeps_logits(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _device(model: Any) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@dataclass
class _Forms:
    """Token sequences of every form of every option of one option set."""

    option: list[int]
    tokens: list[tuple[int, ...]]


def _tokenize_forms(tokenizer: Any, options: OptionSet, memo: dict[OptionSet, _Forms]) -> _Forms:
    if options in memo:
        return memo[options]
    owner: dict[tuple[int, ...], int] = {}
    for i in range(len(options.texts)):
        for form in options.forms(i):
            ids = tuple(tokenizer(form, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ConfigError(f"option form {form!r} tokenizes to nothing")
            if owner.setdefault(ids, i) != i:
                raise ConfigError(
                    f"options {options.texts[owner[ids]]!r} and {options.texts[i]!r} tokenize the same way ({ids})"
                )
    forms = _Forms([i for i in owner.values()], list(owner))
    memo[options] = forms
    return forms


def _last_logps(model: Any, batch: Batch) -> torch.Tensor:
    """(B, V) fp32 log-probs of the token after each left-padded prompt."""
    device, dtype = _device(model)
    batch = batch.to(device, dtype)
    inputs: dict[str, Any] = {**batch.model_inputs(), "use_cache": False}
    if _keeps_logits(model):
        inputs["logits_to_keep"] = 1
    return model(**inputs).logits[:, -1].float().log_softmax(-1)


def _extend(batch: Batch, tails: list[tuple[int, ...]], pad_id: int) -> Batch:
    """Append ``tails[r]`` to row r of a left-padded generation batch, then left-pad again."""
    rows: dict[str, list[list[int]]] = {}
    keys = ["input_ids", "attention_mask"] + [k for k in batch.extras if k in PER_TOKEN]
    for r, tail in enumerate(tails):
        keep = batch.attention_mask[r].bool()
        for key in keys:
            source = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}.get(key)
            values = (batch.extras[key] if source is None else source)[r][keep].tolist()
            extra = {"input_ids": list(tail), "attention_mask": [1] * len(tail)}.get(key, [0] * len(tail))
            rows.setdefault(key, []).append(values + extra)
    width = max(len(row) for row in rows["input_ids"])
    padded = {
        key: torch.tensor([[pad_id if key == "input_ids" else 0] * (width - len(row)) + row for row in values])
        for key, values in rows.items()
    }
    extras = {k: v for k, v in batch.extras.items() if k not in PER_TOKEN}
    extras.update({k: padded[k] for k in keys[2:]})
    return Batch(
        padded["input_ids"],
        padded["attention_mask"],
        None,
        batch.prompt_lengths,
        extras,
        list(batch.ids),
        padding_side="left",
    )


def _tail_logps(model: Any, batch: Batch, tails: list[tuple[int, ...]]) -> tuple[list[list[float]], list[list[bool]]]:
    """Per row, the log-prob of each token of its tail given the prompt and the tail before it, and whether
    that token was the vocabulary's argmax there (what greedy decoding would write)."""
    device, dtype = _device(model)
    width = max(len(t) for t in tails)
    inputs: dict[str, Any] = {**batch.to(device, dtype).model_inputs(), "use_cache": False}
    if _keeps_logits(model):
        inputs["logits_to_keep"] = width + 1
    logps = model(**inputs).logits[:, -(width + 1) :].float().log_softmax(-1)
    top = logps.argmax(-1)
    out, greedy = [], []
    for r, tail in enumerate(tails):
        start = width - len(tail)  # left padding: the row's tail fills its last len(tail) positions
        out.append([float(logps[r, start + j, token]) for j, token in enumerate(tail)])
        greedy.append([int(top[r, start + j]) == token for j, token in enumerate(tail)])
    return out, greedy


def _resolve(
    candidates: list[tuple[int, tuple[int, ...]]], token_logps: list[list[float]], greedy: list[list[bool]]
) -> tuple[int, bool]:
    """Walk the candidates' tokens greedily (see the module docstring); returns the winning option and whether
    the walk stayed on the greedy path (each token followed was the vocabulary's argmax, no summed tie-break)."""
    alive = list(range(len(candidates)))
    depth = 1
    ended: list[int] = []
    on_path = True
    while len({candidates[k][0] for k in alive}) > 1:
        longer = [k for k in alive if len(candidates[k][1]) > depth]
        ended += [k for k in alive if len(candidates[k][1]) <= depth]
        if not longer:
            break
        best = max(token_logps[k][depth] for k in longer)
        alive = [k for k in longer if token_logps[k][depth] == best]
        on_path = on_path and greedy[alive[0]][depth]
        depth += 1
    if len({candidates[k][0] for k in alive}) == 1 and not ended:
        return candidates[alive[0]][0], on_path
    pool = alive + ended
    return candidates[max(pool, key=lambda k: (sum(token_logps[k]), -k))][0], False


@torch.no_grad()
def choose_options(
    loaded: LoadedModel,
    items: list[EvalItem],
    options: list[OptionSet],
    *,
    batch_size: int = 16,
    image_root: str | Path | None = None,
    max_length: int | None = None,
    overflow_hint: str = "raise max_length",
) -> list[OptionChoice]:
    """The option greedy decoding would start with, for each item (see the module docstring). ``max_length``
    bounds each prompt in tokens (and the memory it costs: its text is cut before tokenising); a prompt over it
    raises a ``DataError`` ending with ``overflow_hint``."""
    if len(items) != len(options):
        raise ConfigError(f"{len(items)} items but {len(options)} option sets")
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    model = loaded.model
    was_training = model.training
    model.eval()
    collator = Collator(
        loaded.processor, mode="generate", image_root=image_root, max_length=max_length, overflow_hint=overflow_hint
    )
    memo: dict[OptionSet, _Forms] = {}
    out: list[OptionChoice] = []
    try:
        for start in range(0, len(items), batch_size):
            chunk, sets = items[start : start + batch_size], options[start : start + batch_size]
            logps = _last_logps(model, collator(chunk))
            out += _choose_chunk(loaded, collator, chunk, sets, logps, memo)
    finally:
        model.train(was_training)
    return out


def _choose_chunk(
    loaded: LoadedModel,
    collator: Collator,
    chunk: list[EvalItem],
    sets: list[OptionSet],
    logps: torch.Tensor,
    memo: dict[OptionSet, _Forms],
) -> list[OptionChoice]:
    results: list[OptionChoice | None] = []
    pending: list[tuple[int, list[tuple[int, tuple[int, ...]]], bool]] = []
    firsts: list[list[float]] = []
    for r, option_set in enumerate(sets):
        forms = _tokenize_forms(loaded.tokenizer, option_set, memo)
        row = logps[r]
        per_option = [-math.inf] * len(option_set.texts)
        for owner, tokens in zip(forms.option, forms.tokens, strict=True):
            per_option[owner] = max(per_option[owner], float(row[tokens[0]]))
        firsts.append(per_option)
        best_token = max({t[0] for t in forms.tokens}, key=lambda t: (float(row[t]), -t))
        greedy = int(row.argmax()) == best_token  # argmax: the first of equal maxima, as greedy decoding
        candidates = [(o, t) for o, t in zip(forms.option, forms.tokens, strict=True) if t[0] == best_token]
        if len({o for o, _ in candidates}) == 1:
            results.append(_choice(option_set, candidates[0][0], per_option, 1, greedy))
        else:
            results.append(None)
            pending.append((r, candidates, greedy))
    if pending:
        rows = [(r, c) for r, cands, _ in pending for c in cands]
        batch = collator([chunk[r] for r, _ in rows])
        tails = [tokens for _, (_, tokens) in rows]
        pad = loaded.tokenizer.pad_token_id
        token_logps, greedy_tokens = _tail_logps(loaded.model, _extend(batch, tails, pad), tails)
        k = 0
        for r, cands, first_greedy in pending:
            end = k + len(cands)
            winner, on_path = _resolve(cands, token_logps[k:end], greedy_tokens[k:end])
            k = end
            results[r] = _choice(sets[r], winner, firsts[r], 2, first_greedy and on_path)
    return [r for r in results if r is not None]


def _choice(options: OptionSet, index: int, per_option: list[float], forwards: int, greedy: bool) -> OptionChoice:
    others = [v for i, v in enumerate(per_option) if i != index]
    margin = per_option[index] - max(others) if others else math.inf
    return OptionChoice(index, options.labels[index], options.texts[index], per_option, margin, forwards, greedy)
