"""`/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`: the gateway to the inference servers."""
