"""`/v1/chat/completions` and `/v1/completions`: the gateway to the inference servers."""
