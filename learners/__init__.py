"""Learners (losses over token advantages), the training loop, evaluation and metrics.

Importing the package registers the built-in learners."""

from learners import gear, grpo, grpo_kl, sdpo, sgcd  # noqa: F401  (registers the learners)
