"""How many CPU threads torch runs in this process: the CPUs it may really use, shared among the local processes
of a run and their DataLoader workers.

torch's default is the machine's core count. It ignores cgroup CPU quotas (a container or a SLURM/Kubernetes job
limited to 2 CPUs of a 64-core host gets 64 threads), the other processes of a multi-process run and the loader
workers that compete for the same cores. More OpenMP threads than free cores makes every parallel region wait for
a descheduled thread: on a busy 2-core machine a CMC step was measured 36x slower with 2 threads than with 1.

The rule (:func:`threads_for`)::

    cpus    = min(len(os.sched_getaffinity(0)), cgroup quota / period)   # v2 cpu.max, v1 cfs_quota_us / period
    threads = max(1, floor(cpus / local processes) - loader workers per process)

each loader worker running one torch thread (torch's DataLoader sets that in every worker). Overrides, first
match wins: an explicit request (``train.threads``), ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the
environment (note that ``torchrun`` and ``accelerate launch`` set ``OMP_NUM_THREADS`` for multi-process runs),
and a ``torch.set_num_threads(n)`` the user called after importing this module.

    >>> from multiview.core.threads import threads_for
    >>> threads_for(cpus=16, processes=2, workers=3)
    5
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch itself reads at start-up, in this order
LOCAL_SIZE_ENV = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")

_TORCH_DEFAULT = torch.get_num_threads()  # torch's own choice (or the env's), before anything here changes it
_applied: int | None = None  # the count this module last set, so that a later plan can tell it from the user's


def affinity_cpus() -> int | None:
    """CPUs this process may be scheduled on (``os.sched_getaffinity``), None where the platform cannot say."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _quota_v2(folder: Path) -> tuple[float, str] | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period), f"cgroup v2 cpu.max {quota}/{period}"
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _quota_v1(folder: Path) -> tuple[float, str] | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        if quota <= 0:  # -1: no limit
            return None
        return quota / period, f"cgroup v1 cfs quota {quota}/{period}"
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _up_from(base: Path, relative: str) -> list[Path]:
    """``base/relative`` and its parents up to ``base`` (a quota anywhere above limits us too)."""
    folder = base / relative.strip("/")
    chain = [folder]
    while folder != base and base in folder.parents:
        folder = folder.parent
        chain.append(folder)
    return chain


def cgroup_cpu_quota(root: Path | str | None = None, proc_cgroup: Path | str | None = None) -> tuple[float, str] | None:
    """The tightest CPU quota on this process's cgroup or its ancestors, cgroup v2 (``cpu.max``) or v1
    (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``): ``(cpus, description)``, or None where there is none or the
    files are missing. A cgroup path from ``/proc/self/cgroup`` that is not visible under ``root`` (a container's
    own namespace) falls back to ``root`` itself."""
    root = Path(root) if root is not None else CGROUP_ROOT
    proc_cgroup = Path(proc_cgroup) if proc_cgroup is not None else PROC_SELF_CGROUP
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    places: list[tuple[Path, str, object]] = []  # (mount, path inside it, reader)
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            places += [(root, path, _quota_v2), (root / "unified", path, _quota_v2)]
        elif "cpu" in controllers.split(","):
            places += [(root / name, path, _quota_v1) for name in (controllers, "cpu", "cpu,cpuacct")]
    if not lines:
        places = [(root, "/", _quota_v2), (root / "cpu", "/", _quota_v1)]
    best = None
    seen: set[Path] = set()
    for mount, path, reader in places:
        if not mount.is_dir():
            continue
        chain = _up_from(mount, path)
        if not chain[0].is_dir():
            chain = [mount]
        for folder in chain:
            if folder in seen:
                continue
            seen.add(folder)
            found = reader(folder)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
    return best


def usable_cpus(root: Path | str | None = None, proc_cgroup: Path | str | None = None) -> tuple[float, str]:
    """``(cpus, source)``: the CPUs this process may really use -- its affinity set, lowered to a cgroup quota
    where there is one -- and where the figure comes from."""
    count = affinity_cpus()
    cpus, source = (float(count), "affinity") if count else (float(os.cpu_count() or 1), "os.cpu_count")
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None and quota[0] < cpus:
        cpus, source = quota[0], f"{quota[1]}; affinity {count or os.cpu_count()}"
    return cpus, source


def local_processes(default: int = 1) -> int:
    """Processes of this run on this machine: the launcher's ``LOCAL_WORLD_SIZE`` (torchrun, accelerate) or MPI's
    local size, else ``default``."""
    for name in LOCAL_SIZE_ENV:
        value = _positive_int(os.environ.get(name))
        if value:
            return value
    return max(1, default)


def threads_for(cpus: float, processes: int = 1, workers: int = 0) -> int:
    """``max(1, floor(cpus / processes) - workers)``: torch threads for one of ``processes`` local processes, each
    with ``workers`` single-threaded DataLoader workers, on ``cpus`` usable CPUs."""
    if processes < 1 or workers < 0:
        raise ValueError(f"processes must be >= 1 and workers >= 0; got processes={processes}, workers={workers}")
    return max(1, math.floor(cpus / processes + 1e-9) - workers)


def _positive_int(value: str | None) -> int | None:
    """``"4"`` -> 4; the first level of OpenMP's nested form (``"4,2"``) likewise; anything else -> None."""
    if not value:
        return None
    try:
        number = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return number if number > 0 else None


@dataclass(frozen=True)
class ThreadPlan:
    """The thread count torch runs with, the rule's own choice and what overrode it (None: nothing did)."""

    threads: int
    chosen: int
    cpus: float
    source: str
    processes: int
    workers: int
    override: str | None = None
    wait_policy: str | None = None  # OMP_WAIT_POLICY as this process's OpenMP runtime got it (see multiview/__init__)

    def line(self) -> str:
        """One line for the run's log."""
        s = lambda n, word, plural=None: f"{n:g} {word if n == 1 else plural or word + 's'}"  # noqa: E731
        head = (
            f"CPU threads: {s(self.cpus, 'CPU')} usable ({self.source}), "
            f"{s(self.processes, 'local process', 'local processes')}, "
            f"{s(self.workers, 'loader worker')} each -> "
        )
        tail = f"; OMP_WAIT_POLICY={self.wait_policy}" if self.wait_policy else ""
        if self.override is None:
            return head + f"{s(self.threads, 'torch thread')}{tail}"
        return (
            head + f"{s(self.threads, 'torch thread')} set by {self.override} (the default rule: {self.chosen}){tail}"
        )


def _wait_policy() -> str | None:
    policy = os.environ.get("OMP_WAIT_POLICY")
    package = sys.modules.get("multiview")
    if policy and "OMP_WAIT_POLICY" in getattr(package, "_OPENMP_SET", ()) and not package._OPENMP_BEFORE_TORCH:
        policy += " (child processes only: torch was imported before multiview)"
    return policy


def plan_threads(requested: int | None = None, *, processes: int | None = None, workers: int = 0) -> ThreadPlan:
    """The thread count for this process (see the module docstring for the rule and its overrides).

    Args:
        requested: an explicit count (a recipe's ``train.threads``); wins over everything.
        processes: local processes of the run; None: :func:`local_processes`.
        workers: DataLoader worker processes per process.
    """
    cpus, source = usable_cpus()
    processes = processes or local_processes()
    chosen = min(threads_for(cpus, processes, workers), max(1, _TORCH_DEFAULT))
    plan = dict(
        chosen=chosen, cpus=cpus, source=source, processes=processes, workers=workers, wait_policy=_wait_policy()
    )
    if requested:
        return ThreadPlan(threads=int(requested), override=f"train.threads={requested}", **plan)
    for name in THREAD_ENV:
        value = _positive_int(os.environ.get(name))
        if value:
            return ThreadPlan(threads=value, override=f"{name}={os.environ[name]}", **plan)
    current = torch.get_num_threads()
    if current != _TORCH_DEFAULT and current != _applied:
        return ThreadPlan(threads=current, override=f"torch.set_num_threads({current})", **plan)
    return ThreadPlan(threads=chosen, **plan)


def configure_threads(requested: int | None = None, *, processes: int | None = None, workers: int = 0) -> ThreadPlan:
    """:func:`plan_threads`, then ``torch.set_num_threads`` to it; returns the plan (``plan.line()`` logs it)."""
    global _applied
    plan = plan_threads(requested, processes=processes, workers=workers)
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    _applied = plan.threads
    return plan
