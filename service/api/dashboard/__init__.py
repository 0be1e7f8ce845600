"""The dashboard: a page and its scripts, served by the API, that talk to the public API with the
key a user signs in with (so it can do nothing that key cannot)."""
