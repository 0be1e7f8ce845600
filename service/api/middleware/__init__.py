"""ASGI middleware of the HTTP edge: request ids, access log, key first, body limits."""
