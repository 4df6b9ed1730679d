"""One intra-op thread for the small RL-I2IT networks: on a shared 2-core machine, OpenMP contention
made 32x32 convolutions ten times slower with two threads than with one (measured)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
