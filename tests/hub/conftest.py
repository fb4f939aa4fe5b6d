"""Hub tests run torch on one thread: on the shared 2-core machine a second thread costs far more than it gains."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
