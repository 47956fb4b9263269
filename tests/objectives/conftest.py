import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed, and run on one thread: these tensors are small, and on a busy 2-core machine two threads per op
    spend more time waiting for each other than computing (seen: 0.3 s -> 8 s). Restored afterwards."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
