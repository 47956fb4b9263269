"""Suite-wide settings.

One torch thread per test process (and for the processes tests start): tests spawn torchrun workers and CLI
subprocesses, and on a 2-core machine more OpenMP threads than free cores spin-wait -- we measured a training
step 36x slower with 2 threads than with 1 when the cores were busy.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
