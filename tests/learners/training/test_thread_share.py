"""A parallel comparison's runs share the machine's threads among the runs still training."""

import multiprocessing

import torch

from learners.training.thread_share import ThreadShare


def test_share_grows_as_runs_finish_and_is_applied_to_torch():
    share = ThreadShare(total=4, slots=2, unfinished=multiprocessing.Value("i", 3))
    assert share.threads() == 2  # 3 runs left, 2 training at once
    share.run_finished()
    assert share.threads() == 2
    share.run_finished()
    assert share.unfinished.value == 1
    assert share.threads() == 4  # the last run takes every thread
    before = torch.get_num_threads()
    try:
        share.apply()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_share_is_never_below_one_thread():
    share = ThreadShare(total=1, slots=4, unfinished=multiprocessing.Value("i", 6))
    assert share.threads() == 1
    share.unfinished.value = 0  # every run finished: still a valid count
    assert share.threads() == 1
