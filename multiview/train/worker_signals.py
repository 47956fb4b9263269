"""DataLoader workers that leave SIGINT/SIGTERM to the training process, so a stop always saves a checkpoint.

A scheduler (SLURM, Kubernetes) or a terminal's Ctrl-C signals the whole process group. DataLoader workers install
torch's own SIGTERM handler (die unless the parent sent it): they died first, the main process got
"DataLoader worker ... killed by signal: Terminated" raised from its SIGCHLD handler -- anywhere in a step -- and
the run ended without the checkpoint the stop promises. Workers started through :func:`quiet_workers` ignore both
signals: the main process takes the stop, finishes its step, saves, and shuts its workers down through the
DataLoader's own protocol (a worker also exits when its parent dies).

No race at start-up: the signals are blocked in the main thread while a worker is forked (a signal arriving then
stays pending in the worker, and is discarded when the worker ignores it) -- workers are restarted every epoch.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
from multiprocessing.context import ForkContext, ForkProcess, SpawnContext, SpawnProcess

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals(worker_id: int, previous=None) -> None:
    """A ``worker_init_fn``: ignore SIGINT/SIGTERM (dropping any pending), unblock them, then ``previous``."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if previous is not None:
        previous(worker_id)


def _start_blocked(start, process) -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        start(process)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _ForkProcess(ForkProcess):
    def start(self):
        _start_blocked(ForkProcess.start, self)


class _SpawnProcess(SpawnProcess):
    def start(self):
        _start_blocked(SpawnProcess.start, self)


class _ForkContext(ForkContext):
    Process = _ForkProcess


class _SpawnContext(SpawnContext):
    Process = _SpawnProcess


def quiet_workers(loader) -> None:
    """Make ``loader``'s worker processes (if any) ignore SIGINT/SIGTERM from their start on (fork and spawn start
    methods; with forkserver, from their ``worker_init_fn`` on)."""
    if loader.num_workers == 0:
        return
    previous = loader.worker_init_fn
    if not (isinstance(previous, functools.partial) and previous.func is ignore_stop_signals):
        loader.worker_init_fn = functools.partial(ignore_stop_signals, previous=previous)
    context = loader.multiprocessing_context or multiprocessing.get_context()
    method = context.get_start_method()
    if method == "fork" and not isinstance(context, _ForkContext):
        loader.multiprocessing_context = _ForkContext()
    elif method == "spawn" and not isinstance(context, _SpawnContext):
        loader.multiprocessing_context = _SpawnContext()
