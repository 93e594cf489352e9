"""retain_freed_memory: freed tensors' pages are reused instead of faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"

# Tensors of 3-8 MiB (one AE layer's activations for a block of MNIST images), allocated,
# touched and freed together again and again, as an attack's passes do.
SCRIPT = textwrap.dedent("""
    import resource, sys
    import torch
    from aerobust.allocator import allocator_settings, retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "retain" else None
    assert allocator_settings() == applied

    def cycle():
        tensors = [torch.ones(k * 2**18) for k in (3, 5, 8, 6, 4)]
        del tensors

    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        cycle()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_retained_memory_is_reused_without_page_faults() -> None:
    system, retained = _faults("system"), _faults("retain")
    # 10 cycles of 26 MiB are 66,560 pages; the system's malloc faults a good part of
    # them in again, retained memory (nearly) none.
    assert retained * 4 < system, (retained, system)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_settings_are_reported_and_the_trim_threshold_is_capped() -> None:
    script = ("from aerobust.allocator import retain_freed_memory as r; "
              "print(r(2**40)['trim_threshold'], r(2**20)['mmap_threshold'])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(2**31 - 1), str(32 * 2**20)]


def test_without_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from aerobust import allocator

    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.retain_freed_memory() is None
