"""One inference server: vLLM's OpenAI-compatible server for one catalogue base model, LoRA on;
for an embeddings model (`task: embed`), vLLM's pooling runner on `/v1/embeddings`, without LoRA.

    python -m inference.server --base-model tiny-chat [--host H] [--port P]   (`ftserve inference`)

Adapters are not listed up front: the `ftserve` vLLM plugin resolves them from object storage
the first time a request names one (`inference.resolver`).

The server requires `FTSERVE_INFERENCE_API_KEY` on every `/v1` request (vLLM's `VLLM_API_KEY`,
passed through the environment, not the command line that other local users can read): its
runtime LoRA loading and unloading must stay on for the resolver, and vLLM checks no tenant, so
only the gateway, which checks the caller's organisation first, may reach it. It refuses to
start without one.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from pathlib import Path

from service.catalog import BaseModel, load_catalog
from service.settings import InferenceSettings


def vllm_arguments(
    base: BaseModel, path: Path, settings: InferenceSettings, host: str, port: int, *, gpu: bool
) -> list[str]:
    """`vllm serve` arguments for `base`; `settings.inference_extra_args` are appended last.

    The context is capped at the catalogue's `max_seq_len`: left at the model's own limit (128k
    tokens for many), one sequence's KV cache can exceed a GPU and the server never starts."""
    common = [
        "serve", str(path),
        "--served-model-name", base.name,
        "--host", host, "--port", str(port),
        "--max-model-len", str(base.max_seq_len),
        *(["--gpu-memory-utilization", str(settings.inference_gpu_memory_utilization)] if gpu else []),
        "--dtype", serving_dtype(base, path, gpu=gpu),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if base.task == "embed":
        # The pooling runner: `/v1/embeddings`, pooled as the model's sentence-transformers files
        # say (mean, normalised, for `tiny-embed`). No adapters: the gateway serves base models only.
        return [*common, "--runner", "pooling", "--convert", "embed", *settings.inference_extra_args]
    return [
        *common,
        "--enable-lora",
        "--max-lora-rank", str(settings.inference_max_lora_rank),
        "--max-loras", str(settings.inference_max_loras),
        "--max-cpu-loras", str(settings.inference_max_cpu_loras),
        # Forced JSON comes out compact, as OpenAI's does: with whitespace allowed, a small model
        # may spend its whole token budget on blanks between the fields.
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
        *(["--enable-auto-tool-choice", "--tool-call-parser", base.tool_call_parser] if base.tool_call_parser else []),
        # vLLM takes the template's text as well as a file name.
        *(["--chat-template", base.chat_template] if base.chat_template else []),
        *settings.inference_extra_args,
    ]  # fmt: skip


def serving_dtype(base: BaseModel, path: Path, *, gpu: bool) -> str:
    """The built-in models are built and checked in float32; so, on a CPU, are models whose config
    says float32 (GGUFs converted under 1B parameters): vLLM's `auto` would halve them to bf16 and
    serve other answers than the trainer's. Everything else serves in its own dtype."""
    if base.is_builtin:
        return "float32"
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return "auto"
    declared = config.get("dtype") or config.get("torch_dtype")
    return "float32" if not gpu and declared == "float32" else "auto"


def _environment(settings: InferenceSettings) -> None:
    os.environ["VLLM_API_KEY"] = settings.inference_api_key or ""
    os.environ["VLLM_PLUGINS"] = "ftserve"  # only ours: no other resolver answers for our names
    os.environ["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "true"  # resolvers are consulted only then
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.inference_cpu_kv_cache_gib))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vllm_version_for_cpu_build() -> bool:
    """vLLM's CLI asks for the version of the `vllm` distribution; the CPU build is `vllm-cpu`,
    and vLLM infers the CPU platform from a `+cpu` version. True when the build is for CPUs."""
    lookup = importlib.metadata.version
    try:
        lookup("vllm")
        return False
    except importlib.metadata.PackageNotFoundError:
        cpu_version = lookup("vllm-cpu") + "+cpu"

    def version(name: str) -> str:
        return cpu_version if name == "vllm" else lookup(name)

    importlib.metadata.version = version
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftserve inference")
    parser.add_argument("--base-model", required=True, help="catalogue name of the base model to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    settings = InferenceSettings()
    base = load_catalog(settings).resolve(args.base_model)
    if base is None:
        print(f"ftserve inference: unknown base model {args.base_model!r}", file=sys.stderr)
        return 2
    if not settings.inference_api_key:
        print("ftserve inference: set FTSERVE_INFERENCE_API_KEY (the key the gateway sends)", file=sys.stderr)
        return 2
    os.umask(0o077)  # the adapter cache holds tenants' adapters
    from trainer.base_models import base_model_path
    from trainer.model_import import ModelSourceError

    try:
        path = base_model_path(base, settings)
    except ModelSourceError as exc:
        print(f"ftserve inference: {exc}", file=sys.stderr)
        return 3
    _environment(settings)
    cpu_build = _vllm_version_for_cpu_build()
    sys.argv = ["vllm", *vllm_arguments(base, path, settings, args.host, args.port, gpu=not cpu_build)]
    from vllm.entrypoints.cli.main import main as vllm_main

    vllm_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
