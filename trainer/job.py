"""One fine-tuning job, start to finish, as synchronous code that runs in a worker thread.

`run_training` reads the files, tokenises, trains (resuming when the job was paused or lost
its worker), saves epoch checkpoints and the final adapter, and reports through a `Reporter`
(the async worker's bridge to the database). It raises `JobFailure` for what the user must fix.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from service.adapters import base_fingerprint
from service.catalog import BaseModel
from service.errors import InvalidFileError
from service.fine_tuning.layout import saved_adapter_prefix, saved_state_prefix
from service.settings import Settings
from service.storage import ObjectStorage, download_tree, upload_tree
from service.training_defaults import DPO_DEFAULT_BETA
from trainer.artifacts import results_csv, write_marker
from trainer.base_models import base_model_path
from trainer.data import tokenize_chat
from trainer.dpo import REFERENCE_ADAPTER, DPOObjective, tokenize_preference
from trainer.loop import run
from trainer.model_import import ModelSourceError
from trainer.rft import RFTObjective, group_size, tokenize_prompt
from trainer.rft_grading import GraderPool, sub_grader_names
from trainer.sampling import LocalSampler, VllmSampler
from trainer.sft import LoraSettings, SFTConfig, SFTObjective, StopRequest, load_lora_model, training_device
from trainer.throughput import device_peak_flops
from trainer.token_cache import checked_examples, load_or_build

log = logging.getLogger("ftserve.trainer")
Control = Literal["cancel", "pause", "requeue", "lost", "time_limit"]
"""Why training must stop: the user cancelled or paused, the worker is shutting down, another
worker now holds the job (this one's lease lapsed), or a reinforcement job ran out of time (it
then ends with the adapter trained so far)."""
MAX_FAILURE_EVENTS = 10
"""`warn` events about samples a grader failed on, per run: the metrics count every one."""
MAX_METRIC_EVENTS = 100
TRAINED_ADAPTER = "default"
"""peft's name for the adapter being trained; only it is saved (a DPO reference adapter is not)."""


class JobFailure(Exception):
    """The job cannot succeed as submitted; `code`, `message` and `param` go to `job.error`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class JobSpec:
    """What the worker read from the job's row, for the training thread."""

    job_id: str
    base: BaseModel
    fine_tuned_model: str
    seed: int
    hyperparameters: dict[str, Any]
    training_key: str
    validation_key: str | None
    storage_prefix: str
    resume_prefix: str | None = None
    method: str = "supervised"
    """`supervised`, `dpo` or `reinforcement`."""
    source_adapter: str | None = None
    """Storage prefix of the adapter the job starts from (its `model` was an `ft:` id); None: a
    fresh adapter on the base model."""
    source_model: str | None = None
    """The `ft:` model or checkpoint id the client named, for the job's events."""
    organization_id: str | None = None
    grader: dict[str, Any] | None = None
    """A reinforcement job's grader, as checked when the job was created."""


@dataclass
class Outcome:
    stopped: Control | None
    step: int
    total_steps: int
    trained_tokens: int
    adapter_prefix: str | None = None
    resume_prefix: str | None = None
    results_csv: str = ""


class Reporter(Protocol):
    """Called from the training thread; each call returns once the database has it."""

    def event(self, message: str, *, level: str = "info", type: str = "message", data: Any = None) -> None: ...
    def progress(self, step: int, total_steps: int, metrics: dict[str, float], estimated_finish: int) -> None: ...
    def checkpoint(self, step: int, metrics: dict[str, float], adapter_prefix: str, resume_prefix: str) -> None: ...
    def control(self) -> Control | None: ...


def load_training_state(path: Path) -> dict[str, Any]:
    """A saved training state (optimizer and scheduler state dicts, step, token count, metrics
    history: tensors and plain values only), loaded without running code: it comes from storage,
    which a pickle must not turn into code execution in a worker."""
    return dict(torch.load(path, weights_only=True))


def read_examples(
    storage: ObjectStorage, key: str, param: str, method: str = "supervised", grader: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every example of a stored JSONL file, read in chunks and each checked again for the job's
    method (the file may predate a rule), with the fields a reinforcement job's grader reads."""
    try:
        examples = list(checked_examples(storage.read_chunks(key), param, method, grader))
    except InvalidFileError as exc:
        raise JobFailure(exc.code or "invalid_file", exc.message, param) from exc
    if not examples:
        raise JobFailure("empty_file", "Invalid file format: the file has no examples", param)
    return examples


def tokenize_all(
    tokenizer: Any, examples: list[dict[str, Any]], max_tokens: int, method: str = "supervised"
) -> tuple[list[Any], int]:
    """Tokenised examples (or preference pairs) that still teach something, and how many were truncated."""
    if method == "reinforcement":
        prompts = [tokenize_prompt(tokenizer, e, i, max_tokens=max_tokens) for i, e in enumerate(examples)]
        return prompts, sum(p.truncated for p in prompts)
    if method == "dpo":
        pairs = [tokenize_preference(tokenizer, e, max_tokens=max_tokens) for e in examples]
        kept = [p for p in pairs if p.chosen.trained_tokens and p.rejected.trained_tokens]
        return kept, sum(p.chosen.truncated or p.rejected.truncated for p in pairs)
    out = [tokenize_chat(tokenizer, e, max_tokens=max_tokens) for e in examples]
    return [e for e in out if e.trained_tokens > 0], sum(e.truncated for e in out)


def training_examples(spec: JobSpec, storage: ObjectStorage, settings: Settings, tokenizer: Any) -> tuple[Any, int]:
    """The tokenised training file and how many examples were truncated. Supervised examples are
    streamed into token files under the data dir (`trainer.token_cache`), built once per
    job on this machine and reused by a resumed attempt; preference pairs and RFT prompts are held
    in memory."""
    if spec.method != "supervised":
        raw = read_examples(storage, spec.training_key, "training_file", spec.method, spec.grader)
        return tokenize_all(tokenizer, raw, spec.base.max_seq_len, spec.method)
    try:
        examples, reused = load_or_build(storage, spec.training_key, tokenizer, data_dir=settings.resolved_data_dir(),
                                         job_id=spec.job_id, max_seq_len=spec.base.max_seq_len)  # fmt: skip
    except InvalidFileError as exc:
        raise JobFailure(exc.code or "invalid_file", exc.message, "training_file") from exc
    log.info("job %s: %d training examples, %d tokens, in its token cache (%s)", spec.job_id, len(examples),
             examples.manifest.tokens, "reused" if reused else "built")  # fmt: skip
    return examples, examples.manifest.truncated


class _Callbacks:
    """Turns the trainer's callbacks into reports, checkpoints and stop requests."""

    def __init__(self, spec: JobSpec, storage: ObjectStorage, reporter: Reporter, model: Any, info: dict[str, Any]):
        self.spec, self.storage, self.reporter, self.model, self.info = spec, storage, reporter, model, info
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.start_step: int | None = None
        self.stop_reason: Control | None = None
        self.resume_prefix: str | None = None
        self.time_limit_s: float | None = None

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.history.append({"step": step, **metrics})
        first = self.start_step is None
        if first:
            self.start_step = step - 1
        # At most ~100 metric events per job: the first step of each run, every n-th, scored ones, the last.
        every = max(1, math.ceil(total_steps / MAX_METRIC_EVENTS))
        scored = "valid_loss" in metrics or "valid_reward_mean" in metrics
        if step % every and not first and step != total_steps and not scored:
            return
        done = step - (self.start_step or 0)
        rate = (time.monotonic() - self.started) / max(done, 1)
        self.reporter.progress(step, total_steps, metrics, int(time.time() + rate * (total_steps - step)))

    def _save(self, kind: str, step: int, save_state: Any) -> tuple[str, str]:
        """Upload adapter + full training state; returns (adapter prefix, state prefix)."""
        prefix = saved_state_prefix(self.spec.storage_prefix, kind, step)
        with tempfile.TemporaryDirectory(prefix="ftserve-ckpt-") as tmp:
            adapter = Path(tmp) / "adapter"
            self.model.save_pretrained(adapter, selected_adapters=[TRAINED_ADAPTER])
            write_marker(adapter, {**self.info, "step": step})
            upload_tree(self.storage, adapter, prefix + "adapter/", last="ftserve.json")
            state = {**save_state(), "history": self.history}
            torch.save(state, Path(tmp) / "state.pt")
            self.storage.put_file(prefix + "state.pt", Path(tmp) / "state.pt")
        return saved_adapter_prefix(prefix), prefix

    def on_epoch_end(self, epoch: int, step: int, total_steps: int, save: Any, metrics: dict[str, float]) -> None:
        if self.reporter.control() == "lost":
            return  # another worker may hold the job now: store nothing
        last = next((r for r in reversed(self.history) if r["step"] == step), {"step": step, **metrics})
        adapter_prefix, state_prefix = self._save("checkpoints", step, save)
        self.reporter.checkpoint(step, last, adapter_prefix, state_prefix)

    def should_stop(self, step: int) -> StopRequest:
        self.stop_reason = self.reporter.control()
        if self.stop_reason is None and self.time_limit_s and time.monotonic() - self.started > self.time_limit_s:
            self.stop_reason = "time_limit"
            return "cancel"
        if self.stop_reason is None:
            return None
        return "cancel" if self.stop_reason in ("cancel", "lost") else "pause"

    def on_stop(self, request: StopRequest, step: int, save_state: Any) -> None:
        if request == "pause" and step > 0:
            _, self.resume_prefix = self._save("pauses", step, save_state)


def download_source(spec: JobSpec, storage: ObjectStorage, local: Path, fingerprint: dict[str, Any]) -> LoraSettings:
    """Fetch the adapter a job starts from into `local`; its LoRA settings, which the new adapter
    inherits. A source deleted since the job was created, or trained on another build of the base
    model, fails the job."""
    assert spec.source_adapter is not None
    download_tree(storage, spec.source_adapter, local)
    if not (local / "adapter_model.safetensors").is_file() or not (local / "adapter_config.json").is_file():
        raise JobFailure("model_not_available", f"The model {spec.source_model} this job starts from was deleted.",
                         "model")  # fmt: skip
    marker = local / "ftserve.json"
    trained_on = json.loads(marker.read_text()).get("fingerprint") if marker.is_file() else None
    if trained_on is not None and trained_on != fingerprint:
        raise JobFailure("model_not_available", f"The model {spec.source_model} was trained on another build of "
                         f"{spec.base.name} than this trainer has.", "model")  # fmt: skip
    config = json.loads((local / "adapter_config.json").read_text())
    return LoraSettings(int(config["r"]), int(config["lora_alpha"]), float(config.get("lora_dropout") or 0.0),
                        sorted(config["target_modules"]))  # fmt: skip


def load_source_weights(model: Any, local: Path) -> None:
    """Copy a downloaded adapter's weights into `model`'s trained adapter (same LoRA settings)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(local / "adapter_model.safetensors"))
    if result.unexpected_keys:
        raise JobFailure("model_not_available", f"The source adapter does not fit the base model: "
                         f"{result.unexpected_keys[:3]}", "model")  # fmt: skip


def run_training(spec: JobSpec, storage: ObjectStorage, settings: Settings, reporter: Reporter) -> Outcome:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    if settings.trainer_threads:
        torch.set_num_threads(settings.trainer_threads)
    try:
        base_path = base_model_path(spec.base, settings)
    except ModelSourceError as exc:  # permanent: the job fails now, with the cause and the fix
        raise JobFailure("base_model_unavailable", str(exc), "model") from exc
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if spec.base.chat_template:
        tokenizer.chat_template = spec.base.chat_template
    examples, truncated = training_examples(spec, storage, settings, tokenizer)
    if truncated:
        reporter.event(
            f"{truncated} training example(s) exceed {spec.base.max_seq_len} tokens and were truncated at the end.",
            level="warn",
        )
    if not examples:
        raise JobFailure("invalid_training_file", "No training example has an assistant token left to learn from.",
                         "training_file")  # fmt: skip
    validation = None
    if spec.validation_key:
        validation, _ = tokenize_all(
            tokenizer,
            read_examples(storage, spec.validation_key, "validation_file", spec.method, spec.grader),
            spec.base.max_seq_len,
            spec.method,
        )
    hp = spec.hyperparameters
    lora = LoraSettings(settings.lora_r, settings.lora_alpha, settings.lora_dropout, list(settings.lora_target_modules))
    fingerprint = base_fingerprint(base_path)
    source_dir = None
    if spec.source_adapter:
        source_dir = Path(tempfile.mkdtemp(prefix="ftserve-source-"))
        try:
            lora = download_source(spec, storage, source_dir, fingerprint)
        except BaseException:
            shutil.rmtree(source_dir, ignore_errors=True)
            raise
    config = SFTConfig(
        n_epochs=int(hp["n_epochs"]),
        batch_size=int(hp["batch_size"]),
        learning_rate=spec.base.learning_rate * float(hp["learning_rate_multiplier"]),
        seed=spec.seed,
        lora=lora,
        max_tokens_per_microbatch=settings.trainer_tokens_per_pass,
        gradient_checkpointing=settings.trainer_gradient_checkpointing,
        peak_flops=settings.trainer_peak_flops or device_peak_flops(training_device()),
    )
    model = load_lora_model(base_path, lora, seed=spec.seed, gradient_checkpointing=config.gradient_checkpointing)
    reference_adapter = None
    if source_dir is not None:
        try:
            load_source_weights(model, source_dir)
            if spec.method in ("dpo", "reinforcement"):  # the source, frozen, is the reference policy
                model.load_adapter(str(source_dir), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
                reference_adapter = REFERENCE_ADAPTER
        finally:
            shutil.rmtree(source_dir, ignore_errors=True)
    if source_dir is not None and not spec.resume_prefix:
        reporter.event(f"Fine-tuning from {spec.source_model}: starting from its adapter's weights, with its LoRA "
                       f"settings (rank {lora.r}, alpha {lora.alpha})"
                       + (", and as the frozen DPO reference" if reference_adapter else ""))  # fmt: skip
    info = {
        "base_model": spec.base.name,
        "base_source": spec.base.source,
        "fine_tuned_model": spec.fine_tuned_model,
        "job_id": spec.job_id,
        "fingerprint": fingerprint,
        **({"source_model": spec.source_model} if spec.source_model else {}),
    }
    callbacks = _Callbacks(spec, storage, reporter, model, info)
    resume_state = None
    if spec.resume_prefix:
        with tempfile.TemporaryDirectory(prefix="ftserve-resume-") as tmp:
            local = download_tree(storage, spec.resume_prefix, Path(tmp))
            set_peft_model_state_dict(model, load_file(local / "adapter" / "adapter_model.safetensors"))
            resume_state = load_training_state(local / "state.pt")
        callbacks.history = resume_state.pop("history", [])
        reporter.event(f"Resuming from step {resume_state['step']}")
    objective: Any = SFTObjective(tokenizer.pad_token_id)
    if spec.method == "dpo":
        objective = DPOObjective(tokenizer.pad_token_id, beta=float(hp.get("beta", DPO_DEFAULT_BETA)),
                                 reference_adapter=reference_adapter)  # fmt: skip
    graders = None
    if spec.method == "reinforcement":
        objective, graders = reinforcement_objective(spec, settings, reporter, tokenizer, base_path, reference_adapter)
        callbacks.time_limit_s = settings.rft_max_job_s
    try:
        result = _train(spec, settings, reporter, model, config, examples, callbacks, objective, validation,
                        resume_state)  # fmt: skip
    finally:
        if graders is not None:
            graders.close()
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return Outcome(None, result.steps, 0, result.trained_tokens)  # rank 0 stores the results
    total_steps = math.ceil(len(examples) / config.batch_size) * config.n_epochs
    if result.stopped and callbacks.stop_reason == "time_limit":
        message = (f"Training stopped at step {result.steps} of {total_steps}: the job reached its time limit "
                   f"({settings.rft_max_job_s:g} s); the adapter trained so far is the result.")  # fmt: skip
        reporter.event(message, level="warn")
    elif result.stopped:
        return Outcome(callbacks.stop_reason, result.steps, total_steps, result.trained_tokens,
                       resume_prefix=callbacks.resume_prefix)  # fmt: skip
    if reporter.control() == "lost":  # another worker may hold the job now: store nothing
        return Outcome("lost", result.steps, total_steps, result.trained_tokens)
    adapter_prefix = saved_adapter_prefix(spec.storage_prefix)
    with tempfile.TemporaryDirectory(prefix="ftserve-adapter-") as tmp:
        model.save_pretrained(Path(tmp), selected_adapters=[TRAINED_ADAPTER])
        write_marker(Path(tmp), {**info, "step": result.steps})
        upload_tree(storage, Path(tmp), adapter_prefix, last="ftserve.json")
    return Outcome(None, result.steps, total_steps, result.trained_tokens, adapter_prefix=adapter_prefix,
                   results_csv=results_csv(callbacks.history))  # fmt: skip


def _train(spec: JobSpec, settings: Settings, reporter: Reporter, model: Any, config: SFTConfig, examples: list[Any],
           callbacks: _Callbacks, objective: Any, validation: list[Any] | None,
           resume_state: dict[str, Any] | None) -> Any:  # fmt: skip
    if settings.trainer_devices > 1 and not torch.distributed.is_initialized():
        from trainer.ranks import data_parallel

        reporter.event(f"Training on {settings.trainer_devices} devices (data parallel)")
        with data_parallel(spec, settings.trainer_devices):
            return run(model, config, examples, callbacks, objective, validation=validation,
                       resume_state=resume_state)  # fmt: skip
    return run(model, config, examples, callbacks, objective, validation=validation, resume_state=resume_state)


def reinforcement_objective(spec: JobSpec, settings: Settings, reporter: Reporter, tokenizer: Any, base_path: Path,
                            reference_adapter: str | None) -> tuple[RFTObjective, GraderPool]:  # fmt: skip
    """A reinforcement job's GRPO objective (`trainer.rft`), its sampler and its graders."""
    hp = spec.hyperparameters
    if hp.get("reasoning_effort", "default") != "default":
        reporter.event(f"reasoning_effort={hp['reasoning_effort']!r} has no effect: {spec.base.name} is not a "
                       "reasoning model.", level="warn")  # fmt: skip
    assert spec.grader is not None
    graders = GraderPool(spec.grader, settings, spec.organization_id, settings.rft_grader_concurrency)
    sampler: Any = VllmSampler(str(base_path), tokenizer) if settings.rft_sampler == "vllm" else LocalSampler(tokenizer)
    reported = [0]

    def on_failures(step: int, count: int, detail: str | None) -> None:
        if reported[0] < MAX_FAILURE_EVENTS:
            reported[0] += 1
            reporter.event(f"Step {step}: the grader failed on {count} sample(s), which got reward 0"
                           + (f" ({detail})" if detail else ""), level="warn")  # fmt: skip

    objective = RFTObjective(
        sampler,
        graders.grade_groups,
        seed=spec.seed,
        group=group_size(float(hp.get("compute_multiplier", 1.0))),
        max_new_tokens=settings.rft_max_sample_tokens,
        eval_interval=int(hp.get("eval_interval") or 1),
        eval_samples=int(hp.get("eval_samples") or 4),
        sub_grader_names=sub_grader_names(spec.grader),
        on_failures=on_failures,
        reference_adapter=reference_adapter,
    )
    return objective, graders
