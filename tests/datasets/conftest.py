"""One torch thread while these tests render: on the shared 2-core machine, OpenMP threads that wait on each
other under load made the renderer ~6x slower than a single thread (measured)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
