"""`/v1/models`: the base models and the organisation's fine-tuned models and checkpoints."""
