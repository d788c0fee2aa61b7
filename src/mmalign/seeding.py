"""Seeds derived from a run's seed and names: the same numbers in every process, on every machine.

Python's ``hash()`` of a str changes between processes, so every seed the project derives from text (a unit of
a build, an image, an item, a record id) comes from the functions here:

* :func:`derive_seed`: BLAKE2b (8 bytes) of the parts joined by ``|``, read big-endian; ``bits`` keeps its top
  bits (63 by default: a non-negative int64, which torch and numpy both accept);
* :func:`unit_interval`: the same 64-bit hash as a fraction in [0, 1);
* :func:`text_seed`: the first ``nbytes`` of SHA-256 of a text, read little-endian;
* :func:`record_rng`: a numpy generator fixed by a run's seed and a record id (mDPO's corrupted images).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def derive_seed(*parts: object, bits: int = 63) -> int:
    """The top ``bits`` bits of BLAKE2b-64 over ``"|".join(parts)``: ``derive_seed(3, "hallucinate", "s-1")``."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    digest = hashlib.blake2b("|".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


def unit_interval(*parts: object) -> float:
    """Where ``parts`` hash in [0, 1): ``derive_seed(*parts, bits=64) / 2**64``."""
    return derive_seed(*parts, bits=64) / 2**64


def text_seed(text: str, nbytes: int = 4) -> int:
    """The first ``nbytes`` bytes of SHA-256(``text``), little-endian: an integer in [0, 2**(8 * nbytes))."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:nbytes], "little")


def record_rng(seed: int, record_id: str) -> np.random.Generator:
    """A generator fixed by (seed, record id): the same corruption for a record in every epoch and process."""
    import numpy as np

    return np.random.default_rng([seed, text_seed(record_id, 8)])
