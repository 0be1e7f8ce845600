"""The gateway counts streamed answers' usage: it asks vLLM for the final usage chunk and passes
it on only to a client that asked for it."""

from __future__ import annotations

from tests.conftest import Server
from tests.test_metrics import scrape, value

TOKENS = "ftserve_gateway_tokens_total"


def test_streamed_usage_is_counted_and_stripped_unless_asked_for(inference_api: Server) -> None:
    client = inference_api.client()
    url = inference_api.base_url.removesuffix("/v1") + "/metrics"
    before = scrape(url)
    messages = [{"role": "user", "content": "Say hello."}]
    chunks = list(client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=5, stream=True))
    assert chunks and all(c.choices for c in chunks), "no usage-only chunk for a client that did not ask"
    assert all(c.usage is None for c in chunks)
    middle = scrape(url)
    completion = {"model": "tiny-chat", "kind": "completion"}
    assert value(middle, TOKENS, **completion) > value(before, TOKENS, **completion)
    assert value(middle, TOKENS, model="tiny-chat", kind="prompt") > value(before, TOKENS, model="tiny-chat",
                                                                          kind="prompt")  # fmt: skip
    asked = list(client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=5, stream=True,
                                                stream_options={"include_usage": True}))  # fmt: skip
    assert asked[-1].usage is not None and asked[-1].choices == []
    assert value(scrape(url), "ftserve_gateway_upstream_seconds_count", model="tiny-chat") >= 2
