"""The torch thread count of the work whose numbers are stored: training runs and result
cells. torch's CPU kernels split their reductions by the intra-op thread count, so the
same spec trained with 1 and with 2 threads gives different weights; a run name or a cell
key must name one result, whatever the machine, ``--jobs`` or ``--task-cpus``. So stored
work always runs with ``STORED_WORK_THREADS`` threads (one: the count every run in a
store trained with so far, so their names keep naming their numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

STORED_WORK_THREADS = 1


@contextmanager
def stored_work_threads() -> Iterator[None]:
    """Run the enclosed work with ``STORED_WORK_THREADS`` intra-op threads; the caller's
    count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(STORED_WORK_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)
