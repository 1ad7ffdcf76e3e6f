"""Learners: losses over token advantages, their registry and the loss-side forward, SFT,
and the ``toolgym`` command. The run loop is in ``training/``, comparisons in ``reports/``.

Importing the package registers the built-in learners."""

from learners import gear, grpo, grpo_kl, sdpo, sgcd  # noqa: F401  (registers the learners)
