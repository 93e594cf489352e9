"""Where a plan's experiments execute, side by side behind one interface (``Backend``):
``local`` (this machine's processes) and ``ray`` (a Ray cluster; ``ray`` is imported only
when that backend runs). ``reproduce`` plans and keeps the books; a backend runs."""

from __future__ import annotations

from aerobust.backends.base import Backend, Part, Progress, run_summaries
from aerobust.backends.local import Local
from aerobust.backends.ray import Ray
from aerobust.errors import UserError

BACKENDS = ("local", "ray")


def get(name: str, *, jobs: int = 1, device: str = "auto", address: str = "auto",
        task_cpus: int = 1) -> Backend:
    """The backend called ``name`` with its options checked (``jobs`` is the local one's,
    ``address`` and ``task_cpus`` the Ray one's)."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if name not in BACKENDS:
        raise UserError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "ray":
        if jobs != 1:
            raise UserError("--jobs is for --backend local; on Ray the cluster's CPUs and "
                            "GPUs decide how much runs at once")
        return Ray(address, task_cpus, device)
    return Local(jobs, device)


__all__ = ["BACKENDS", "Backend", "Local", "Part", "Progress", "Ray", "get", "run_summaries"]
