"""``--backend local``: a part's experiments one after the other in this process, or
side by side in ``jobs`` worker processes of this machine."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

from aerobust.allocator import allocator_settings, retain_freed_memory
from aerobust.backends.base import Backend, Part, Progress, run_summaries
from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.training import RunStore

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


class Local(Backend):
    """Experiments in ``jobs`` processes of this machine on ``device``."""

    name = "local"

    def __init__(self, jobs: int = 1, device: str = "auto") -> None:
        self.jobs, self.device = jobs, device

    @property
    def driver_device(self) -> str:
        return self.device

    def check(self) -> None:
        """Nothing to check before writing: this machine is the one that runs."""

    def run(self, parts: Sequence[Part], store: RunStore, bar: Progress) -> None:
        for part in parts:
            part.ws.on_cell = lambda row: bar.update(1)
            if self.jobs == 1 or len(part.todo) < 2:
                for name in part.todo:
                    bar.set_postfix_str(f"{part.name}/{name}")
                    start = time.perf_counter()
                    rows = run_experiment(name, part.ws, part.dir)
                    part.finished(name, time.perf_counter() - start, len(rows),
                                  run_summaries(part.ws))
            else:
                self._run_parallel(part, store, bar)
            part.close()

    def _run_parallel(self, part: Part, store: RunStore, bar: Progress) -> None:
        """Independent experiments in ``jobs`` worker processes, the CPU threads split
        between them. Models they share train once: the run store locks each run, so a
        second worker waits for the first and reuses its weights."""
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        context = multiprocessing.get_context("spawn")
        manager = SyncManager(ctx=context)
        manager.start(_die_with_parent, (os.getpid(),))
        parent = (os.getpid(),)
        with manager, ProcessPoolExecutor(self.jobs, mp_context=context,
                                          initializer=_die_with_parent,
                                          initargs=parent) as pool:
            cells = manager.Queue()
            pending: set[Future] = {
                pool.submit(_run_in_worker, part.ws.config, str(store.root), self.device,
                            str(part.dir), name, cells, threads, allocator_settings())
                for name in part.todo}
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    with contextlib.suppress(queue.Empty):
                        while True:
                            cells.get_nowait()
                            bar.update(1)
                    for future in done:
                        part.finished(*future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise


def _die_with_parent(parent: int) -> None:
    """A worker process ends with the run: a run killed with SIGKILL cannot stop its
    workers, and orphans would go on computing beside the resumed run (Linux; elsewhere
    a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _run_in_worker(config: ExperimentConfig, store_root: str, device: str, part_dir: str,
                   name: str, cells: Any, threads: int,
                   allocator: dict[str, int] | None) -> tuple[str, float, int, dict[str, Any]]:
    """One experiment in a worker process: its finished cells go to the parent's queue,
    it takes its share of the CPU threads, and the parent's malloc settings (a spawned
    process starts with the system's)."""
    import torch

    if allocator is not None:
        retain_freed_memory(allocator["trim_threshold"])
    torch.set_num_threads(threads)
    ws = Workspace(config, RunStore(store_root), device=device, progress=False)
    ws.on_cell = lambda row: cells.put(1)
    start = time.perf_counter()
    rows = run_experiment(name, ws, Path(part_dir))
    return name, time.perf_counter() - start, len(rows), run_summaries(ws)
