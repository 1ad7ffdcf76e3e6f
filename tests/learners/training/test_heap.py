import sys

import pytest

from learners.training.heap import give_back_freed_memory, resident_gb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heaps")
def test_freed_heap_memory_goes_back_to_the_system():
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 256 MB in heap-sized blocks
    kept = blocks[-1]  # the heap's top stays in use: only a trim inside it frees the rest
    del blocks
    before = resident_gb()
    give_back_freed_memory()
    assert before - resident_gb() > 0.15
    assert len(kept) == 64 * 1024
