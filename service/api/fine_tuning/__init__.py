"""`/v1/fine_tuning/jobs`: create, list, cancel, pause, resume, events and checkpoints."""
