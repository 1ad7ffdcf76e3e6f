"""The machine's intra-op threads, shared by the runs a parallel comparison trains at once.

``toolgym compare parallel=k`` trains k runs side by side, each in its own process. Runs end
at different times, and the last one would finish alone on its 1/k share of the threads
while the other cores idle. So every run process, between its steps, counts the runs not
yet finished and takes an equal share of the threads among those still training.
Intra-op threads change only how an op's work is split among cores; on the machine the
README names, runs at one and at two threads wrote byte-identical episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ThreadShare:
    total: int
    """Intra-op threads of the machine (the comparison process's ``torch.get_num_threads()``)."""
    slots: int
    """Runs trained at once (``parallel``)."""
    unfinished: Any
    """``multiprocessing.Value("i")``: runs of the comparison not yet finished, shared by
    every run process."""

    def threads(self) -> int:
        """The share of one run while ``unfinished`` runs remain."""
        training = max(min(self.slots, self.unfinished.value), 1)
        return max(self.total // training, 1)

    def apply(self) -> None:
        """Take the current share; call from the thread that runs torch (OpenMP thread
        counts are per calling thread), between steps."""
        threads = self.threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def run_finished(self) -> None:
        with self.unfinished.get_lock():
            self.unfinished.value -= 1
