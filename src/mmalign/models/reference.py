"""Slow, obviously-correct response log-probs, for tests: one sequence at a time, one token at a time.

For each record alone (no padding, batch of one) and each response token t, the model runs on the prefix
``tokens[:t]`` with the record's images and the last position's distribution scores token t. Nothing is
shared with :func:`mmalign.models.logps.sequence_logps` but the collator's tokenization, so padding,
shifting, masking, batching and ``logits_to_keep`` are all checked against it. Cost: one forward per
response token; use it on tiny models and short responses only.
"""

from __future__ import annotations

from typing import Any

import torch

from mmalign.models.collate import IGNORE, PER_TOKEN, Batch, Collator
from mmalign.models.examples import Input, as_record, examples_from
from mmalign.models.logps import LogpOutput, model_device_dtype


@torch.no_grad()
def reference_logps(model: Any, collator: Collator, items: list[Input]) -> LogpOutput:
    """Response log-probs of each row that ``collator(items)`` would make, in the same row order
    (for preference pairs: every chosen response, then every rejected one)."""
    device, dtype = model_device_dtype(model)
    units = [examples_from(as_record(item)) for item in items]
    width = max((len(unit) for unit in units), default=0)
    rows: list[list[float]] = []
    for side in range(width):
        for unit in units:
            single = collator([unit[side]])
            if len(single):  # skipped when it does not fit max_length, as in the batch
                rows.append(_token_by_token(model, single.to(device, dtype)))
    n_tokens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    sums = torch.tensor([sum(r) for r in rows], dtype=torch.float64)
    token_logps = torch.zeros(len(rows), max(max(n_tokens.tolist(), default=0), 1), dtype=torch.float64)
    for i, r in enumerate(rows):
        token_logps[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
    mask = torch.arange(token_logps.shape[1]) < n_tokens.unsqueeze(-1)
    return LogpOutput(sums, sums / n_tokens.clamp(min=1), n_tokens, token_logps, mask)


def _token_by_token(model: Any, batch: Batch) -> list[float]:
    """log p(token t | tokens < t, images) for each labelled t, each from its own forward on the prefix."""
    assert batch.labels is not None and len(batch) == 1
    labels = batch.labels[0]
    out = []
    for t in range(1, labels.shape[0]):
        if int(labels[t]) == IGNORE:
            continue
        inputs = {k: v[:, :t] if k in PER_TOKEN else v for k, v in batch.model_inputs().items()}
        logits = model(**inputs, use_cache=False).logits[0, -1].double()
        out.append(float(logits.log_softmax(-1)[labels[t]]))
    return out
