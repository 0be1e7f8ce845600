"""`/v1/files`: training data in, result files out."""
