"""multiview: self-supervised multimodal, multi-view representation learning by maximising cross-view MI.

Sub-packages follow the data flow (see docs/ and DESIGN): ``data`` (shards) -> ``views`` (view generators)
-> ``encoders`` -> ``objectives`` -> ``train`` -> ``eval``. Import the sub-package you need; importing
``multiview`` itself stays light.
"""

import os as _os
import sys as _sys

# OpenMP threads that wait for work spin on a CPU (libgomp: ~300,000 spins, i.e. milliseconds) before they sleep:
# on a machine shared with other work they take the cores the working threads need. Measured here (2 cores, two
# busy processes, CMC on mfeat): 2.7-6.5 s per step with torch's default, 0.28-0.37 s with PASSIVE (benchmarks/
# threads.py). The OpenMP runtime reads these once, when torch loads: importing multiview before torch (as the
# CLI does) sets them for this process, otherwise for its child processes only. A value already set is kept.
_OPENMP_QUIET = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}  # GNU / LLVM and Intel OpenMP
_OPENMP_BEFORE_TORCH = "torch" not in _sys.modules  # True: the defaults below reach this process's torch too
_OPENMP_SET = tuple(name for name in _OPENMP_QUIET if name not in _os.environ)  # the ones multiview set
for _name in _OPENMP_SET:
    _os.environ[_name] = _OPENMP_QUIET[_name]

from multiview.core.version import __version__  # noqa: E402


def load_encoder(path, **kwargs):
    """Load an encoder exported by ``multiview export`` (safetensors + config). See multiview.encoders.export."""
    from multiview.encoders.export import load_encoder as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_encoder"]
