"""How a process reaches the inference servers and runs graders (the API and, for
reinforcement fine-tuning, the trainer workers)."""

from __future__ import annotations

from pathlib import Path

from service.settings.common import CommonSettings


class InferenceClientSettings(CommonSettings):
    """Where the inference servers are, and the key they require."""

    inference_urls: dict[str, str] = {}
    """Base model name → its inference server's URL (JSON in the environment). `ftserve up` fills
    it for the servers it starts."""

    inference_api_key: str | None = None
    """The key inference servers require and only the gateway sends (`VLLM_API_KEY`); `ftserve up`
    generates one when unset. An inference server refuses to start without one."""


class GraderSettings(InferenceClientSettings):
    """Graders: the python sandbox and the data some metrics need."""

    python_grader: str = "on"
    """`off` refuses `python` graders with a 400; `on` runs them in the bubblewrap sandbox."""

    python_grader_timeout_s: float = 10.0
    """Wall-clock limit of one python grader call; past it the sandbox is killed."""

    python_grader_memory_mb: int = 512
    """Address-space limit of a python grader's sandbox."""

    wordnet_dir: Path = Path("/usr/share/wordnet")
    """WordNet 3.0 data for the `meteor` metric (Debian's `wordnet-base` puts it here)."""
