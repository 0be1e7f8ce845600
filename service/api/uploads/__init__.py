"""`/v1/uploads`: large files in parts, assembled into a File on completion."""
