"""Checkpoint permissions: `/v1/fine_tuning/checkpoints/{checkpoint}/permissions`."""
