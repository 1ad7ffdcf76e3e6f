import os

import pytest
import torch

# Tests never reach the internet: litellm's price table stays local (shared/FACTS.md).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def one_thread():
    """Test models are tiny: one thread is faster than two, and immune to OpenMP waits when
    other jobs share the cores. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
