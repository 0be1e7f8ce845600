"""Getting a base model in: GGUF files converted once, every source checked before it is used.

    python -m trainer.model_import --name NAME --source SOURCE [--chat-template FILE] [--task T]

(what `ftserve models add` runs in a subprocess, so that the API's code never imports torch or
transformers). It prints one JSON object: `{"ok": true, "weights": …, "chat_template": …}` or
`{"ok": false, "error": "<what is wrong and how to fix it>"}`.

A `.gguf` source (a file, or a directory holding one) is read by transformers' GGUF loader
(tokenizer, chat template, dequantised weights), saved as an ordinary model directory at
`import_dtype`, and uploaded to object storage under `base_model_prefix`; trainers and
inference servers download those bytes (`trainer.base_models`), so every role serves and trains
the same weights, and the base fingerprint hashes them.

`check_model_dir` is the one check of a model directory, run here and again by every worker and
inference server when it first loads an entry (a hand-edited catalogue is checked too). Each
failure is a `ModelSourceError`, whose message names the source and the fix.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
PROBE_CONVERSATION = [
    {"role": "system", "content": "ftserve-probe-system"},
    {"role": "user", "content": "ftserve-probe-user"},
    {"role": "assistant", "content": "ftserve-probe-answer"},
]
"""A conversation rendered with the chat template: the answer must appear in the text, or loss
could never be put on assistant tokens."""


class ModelSourceError(Exception):
    """A base model source that cannot be used as it is; the message says why and what to do.

    Permanent: trying again gives the same answer, so a job on it fails at once."""


@dataclass
class CheckedModel:
    path: Path
    architecture: str
    parameters: int | None
    has_chat_template: bool


def find_gguf(source: Path) -> Path | None:
    """The GGUF file `source` names: itself, or the only `.gguf` in a directory."""
    if source.is_file() and source.suffix == ".gguf":
        return source
    if source.is_dir():
        found = sorted(source.glob("*.gguf"))
        if len(found) > 1:
            names = ", ".join(f.name for f in found[:4])
            raise ModelSourceError(f"{source} holds several GGUF files ({names}); give the one to use as --source.")
        return found[0] if found else None
    return None


def import_dtype(parameters: int) -> str:
    """The dtype a converted model is saved in: float32 below 1B parameters (a CPU trains and
    serves float32, and the file stays small), bfloat16 above (GPUs train in bf16)."""
    return "float32" if parameters < 1_000_000_000 else "bfloat16"


def convert_gguf(gguf: Path, out: Path, chat_template: str | None = None) -> Path:
    """Write `gguf` as a model directory in `out`: safetensors weights, tokenizer, chat template
    (`chat_template` replaces the GGUF's), generation stopping at the end of an assistant's turn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelSourceError(
            f"{gguf} could not be read as a GGUF model ({type(exc).__name__}: {str(exc)[:300]}). transformers reads "
            "GGUF files of Llama, Mistral, Qwen2, Gemma 2/3, Phi-3 and similar architectures; convert others to a "
            "Hugging Face model directory and give that directory as --source."
        ) from exc
    dtype = import_dtype(sum(p.numel() for p in model.parameters()))
    model = model.to(getattr(torch, dtype))
    # Saved as a plain model: the weights are dequantised, so nothing may read them as GGUF again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = dtype
    if chat_template:
        tokenizer.chat_template = chat_template
    stop = end_of_turn_token(tokenizer)
    if stop is not None and model.generation_config is not None:
        # Generation must stop where the training answers stop: at the template's end-of-turn
        # token (Gemma's `<end_of_turn>`), which a GGUF's own end-of-sequence token may not be.
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if stop not in eos:
            model.generation_config.eos_token_id = [*eos, stop]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def end_of_turn_token(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant's answer, if any."""
    if not tokenizer.chat_template:
        return None
    try:
        text = tokenizer.apply_chat_template(PROBE_CONVERSATION, tokenize=False)
    except Exception:
        return None
    _, found, after = text.partition("ftserve-probe-answer")
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if found and after else []
    return ids[0] if ids and ids[0] in tokenizer.all_special_ids + list(tokenizer.added_tokens_decoder) else None


def check_model_dir(
    path: Path, source: str, *, chat_template: str | None = None, task: str = "generate"
) -> CheckedModel:
    """That `path` holds a model ftserve can train and serve: a config, a tokenizer, a generative
    (or, for `task="embed"`, any) architecture, and a chat template that shows the answer."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"{source}: no config.json in {path}. Give a Hugging Face model directory "
            "(config.json, weights, tokenizer) or a .gguf file."
        )
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ModelSourceError(
            f"{source}: its config.json cannot be read ({type(exc).__name__}: {str(exc)[:300]}); "
            "a newer transformers may know this architecture."
        ) from exc
    architecture = (getattr(config, "architectures", None) or ["?"])[0]
    if task == "generate" and config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelSourceError(
            f"{source}: {architecture} ({config.model_type}) is not a text-generation model "
            "transformers can fine-tune; give a causal language model (Llama, Qwen, Gemma, "
            "Mistral, SmolLM, …), or add it with --task embed if it is an embeddings model."
        )
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
    if not weights:
        raise ModelSourceError(f"{source}: no weights (*.safetensors or *.bin) in {path}.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelSourceError(
            f"{source}: its tokenizer cannot be loaded ({type(exc).__name__}: {str(exc)[:300]}); "
            "the directory needs tokenizer.json or the tokenizer's own files."
        ) from exc
    template = chat_template or tokenizer.chat_template
    if task == "generate":
        if not template:
            raise ModelSourceError(
                f"{source}: its tokenizer has no chat template, so chat messages cannot be turned "
                "into tokens. Give one with --chat-template FILE (a Jinja template, as in a "
                "model's chat_template.jinja), or use the model's instruct version."
            )
        check_chat_template(tokenizer, template, source)
    return CheckedModel(path, architecture, _parameter_count(path), bool(template))


def check_chat_template(tokenizer: Any, template: str, source: str) -> None:
    """The template renders a system/user/assistant conversation and shows the answer's text."""
    try:
        text = tokenizer.apply_chat_template(PROBE_CONVERSATION, chat_template=template, tokenize=False)
    except Exception as exc:
        raise ModelSourceError(
            f"{source}: its chat template fails on a system, user and assistant conversation "
            f"({type(exc).__name__}: {str(exc)[:300]}); give a working one with "
            "--chat-template FILE."
        ) from exc
    if "ftserve-probe-answer" not in text:
        raise ModelSourceError(
            f"{source}: its chat template drops the assistant's message, so no answer could be "
            "learned; give a template that renders it with --chat-template FILE."
        )


def _parameter_count(path: Path) -> int | None:
    """Parameters, from the safetensors headers (no weights are read)."""
    total = 0
    for file in path.glob("*.safetensors"):
        with file.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size > 100 * MIB:
                return None
            header = json.loads(handle.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= int(dim)
                total += count
    return total or None


def tree_digest(path: Path) -> str:
    """SHA-256 over the directory's files (names and bytes): the stored copy's name."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(4 * MIB):
                digest.update(chunk)
    return digest.hexdigest()


def import_model(name: str, source: str, *, chat_template: str | None, task: str) -> dict[str, Any]:
    """Check `source`; a GGUF is converted and stored. What the catalogue entry records."""
    from service.fine_tuning.layout import base_model_prefix
    from service.settings import Settings
    from service.storage import configured_storage, upload_tree
    from trainer.base_models import fetch_source

    local = Path(source).expanduser()
    gguf = find_gguf(local) if local.exists() else None
    if gguf is None:
        path = local.resolve() if local.exists() else fetch_source(source, Settings())
        checked = check_model_dir(path, source, chat_template=chat_template, task=task)
        return {
            "ok": True,
            "source": str(path) if local.exists() else source,
            "weights": None,
            "architecture": checked.architecture,
            "parameters": checked.parameters,
        }
    with tempfile.TemporaryDirectory(prefix="ftserve-import-") as tmp:
        out = convert_gguf(gguf, Path(tmp) / "model", chat_template)
        checked = check_model_dir(out, source, chat_template=chat_template, task=task)
        prefix = base_model_prefix(name, tree_digest(out)[:16])
        settings = Settings()
        upload_tree(configured_storage(settings), out, prefix, last="config.json")
    return {
        "ok": True,
        "source": str(gguf.resolve()),
        "weights": prefix,
        "architecture": checked.architecture,
        "parameters": checked.parameters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.model_import")
    parser.add_argument("--name", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--chat-template", help="a Jinja chat template file, for a tokenizer without one")
    parser.add_argument("--task", choices=["generate", "embed"], default="generate")
    args = parser.parse_args(argv)
    # Run as `python -m`, this file is `__main__`: the error class the checks raise is the one of
    # the imported module, not this copy's.
    from trainer import model_import

    template = None
    try:
        if args.chat_template:
            try:
                template = Path(args.chat_template).read_text()
            except OSError as exc:
                raise model_import.ModelSourceError(f"--chat-template {args.chat_template}: {exc.strerror}") from exc
        result = model_import.import_model(args.name, args.source, chat_template=template, task=args.task)
    except model_import.ModelSourceError as exc:
        result = {"ok": False, "error": str(exc)}
    if template is not None and result["ok"]:
        result["chat_template"] = template
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
