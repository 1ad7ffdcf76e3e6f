"""The run loop around a learner: rollouts, update, held-out evaluation, checkpoints,
metrics and tracking, thread shares and learner ranks."""
