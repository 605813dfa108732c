"""The near-duplicate search's bulk steps, looked up when they run, so that another engine can run them.

``matching.near_matches`` combines four steps that each touch many images at once: the pHash join
(``neighbors.dihedral_join``), the exact k-NN join (``neighbors.knn_join``), the approximate one
(``ann.IvfIndex`` + ``ann.ivf_join``) and the verification of candidate pairs
(``verify.verify_pairs``). It calls them through ``search_ops()``: the local functions, unless a
block runs under ``using_ops(...)``; ``similarity/sharded.py`` runs them on a Dask cluster with the
same answers. Everything that combines their results (budgets, margins, the union of candidates,
the acceptance rules) stays in matching.py, in one copy, so both engines find the same pairs.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator

from dsaudit.similarity.neighbors import dihedral_join, knn_join
from dsaudit.similarity.verify import verify_pairs


@dataclass(frozen=True)
class SearchOps:
    """The bulk steps, each with the signature and the answer of the local function it stands for
    (None: ann's own, imported when first needed)."""
    hash_join: Callable = dihedral_join
    knn_join: Callable = knn_join
    verify: Callable = verify_pairs
    ivf_index: Callable | None = None
    ivf_join: Callable | None = None

    def ivf(self) -> tuple[Callable, Callable]:
        """(index builder, join) of the approximate search."""
        from dsaudit.similarity.ann import IvfIndex, ivf_join

        return self.ivf_index or IvfIndex, self.ivf_join or ivf_join


_CURRENT: contextvars.ContextVar[SearchOps] = contextvars.ContextVar("dsaudit_search_ops", default=SearchOps())


def search_ops() -> SearchOps:
    """The bulk steps in use: the local ones unless the caller is inside `using_ops`."""
    return _CURRENT.get()


@contextlib.contextmanager
def using_ops(ops: SearchOps) -> Iterator[SearchOps]:
    """Run the searches started inside the block (in this thread) with `ops`."""
    token = _CURRENT.set(ops)
    try:
        yield ops
    finally:
        _CURRENT.reset(token)
