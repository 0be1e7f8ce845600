"""Wire shapes of `/v1/fine_tuning/jobs`, field for field as OpenAI's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.db.models import FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent
from service.fine_tuning import JobStatus, method_hyperparameters

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """Each value a number or `"auto"` (resolved from the data set's size once the files are validated)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: Auto | Annotated[int, Field(ge=1, le=256)] = "auto"
    """Examples per optimizer step."""
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=100)] = "auto"
    """Scales the base model's learning rate from the catalogue."""
    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = "auto"
    """Passes over the training file."""


class DpoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=2)] = "auto"
    """How far the tuned model may move from the reference (higher: more conservative)."""


class ReinforcementHyperparameters(Hyperparameters):
    """OpenAI's `FineTuneReinforcementHyperparameters`; `"auto"` resolves once the files are validated."""

    compute_multiplier: Auto | Annotated[float, Field(gt=0.00001, le=10)] = "auto"
    """Scales the completions sampled per prompt (the group size: 8 at 1.0, at least 2)."""
    eval_interval: Auto | Annotated[int, Field(ge=1)] = "auto"
    """Training steps between scorings of the validation prompts ("auto": one epoch)."""
    eval_samples: Auto | Annotated[int, Field(ge=1, le=100)] = "auto"
    """Completions sampled per validation prompt at each scoring ("auto": 4)."""
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"
    """Accepted; a model without reasoning (every catalogue model today) ignores it, with a `warn` event."""


class ReinforcementMethod(BaseModel):
    grader: dict[str, Any]
    """A grader as `/fine_tuning/alpha/graders/validate` takes it; checked when the job is created."""
    hyperparameters: ReinforcementHyperparameters | None = None


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters | None = None


class DpoMethod(BaseModel):
    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    """The training method."""
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None


SUFFIX_PATTERN = r"^[A-Za-z0-9._-]+$"
"""Characters a suffix may have: it becomes part of a model id, which must survive a URL path."""


class WandbIntegration(BaseModel):
    project: str = Field(min_length=1, max_length=128)
    """Weights & Biases project (stored, not called)."""
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=50)


class Integration(BaseModel):
    type: Literal["wandb"]
    """Only `wandb`; stored and returned, not called (this service reaches no third party)."""
    wandb: WandbIntegration


class CreateJobRequest(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    """A catalogue base model or one of its aliases, or a fine-tuned model or checkpoint (`ft:…`) the
    organisation may call: the new adapter then starts from that one's weights."""
    training_file: str = Field(min_length=1, max_length=64)
    """Id of a file with purpose `fine-tune`."""
    validation_file: str | None = Field(default=None, max_length=64)
    """Id of a file with purpose `fine-tune`, scored at the end of each epoch."""
    suffix: str | None = Field(default=None, min_length=1, max_length=64, pattern=SUFFIX_PATTERN)
    """Up to 64 letters, digits, `-`, `_` or `.`, added to the fine-tuned model's name."""
    seed: int | None = Field(default=None, ge=0, le=2147483647)
    """Makes the run reproducible; generated when absent."""
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    """Up to 16 key-value pairs to find the job by."""
    hyperparameters: Hyperparameters | None = None
    """Deprecated top-level form of `method.supervised.hyperparameters`."""
    method: Method | None = None
    """`supervised` (default), `dpo` or `reinforcement`."""
    integrations: list[Integration] | None = Field(default=None, max_length=5)
    """Stored and returned as given."""


class JobError(BaseModel):
    code: str
    """Machine-readable reason, such as `invalid_n_examples`."""
    message: str
    """What went wrong and how to fix it."""
    param: str | None
    """The request parameter at fault (`training_file`, `validation_file`), if any."""


class JobHyperparameters(BaseModel):
    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None
    n_epochs: Auto | int | None = None


class FineTuningJobObject(BaseModel):
    """A fine-tuning job."""

    id: str
    """`ftjob-…`."""
    object: Literal["fine_tuning.job"]
    created_at: int
    """Unix time (s) the job was created."""
    error: JobError | None
    """Why the job failed; null otherwise."""
    fine_tuned_model: str | None
    """`ft:{base}:{org}:{suffix}:{job id}` once the job succeeds; null before."""
    finished_at: int | None
    """Unix time (s) the job reached a final state."""
    hyperparameters: JobHyperparameters
    """The hyperparameters in use (numbers once `"auto"` is resolved)."""
    model: str
    """The base model as the job was created with."""
    organization_id: str
    result_files: list[str]
    """Ids of the `fine-tune-results` CSV files."""
    seed: int
    status: JobStatus
    """`validating_files`, `queued`, `running`, `paused`, `succeeded`, `failed` or `cancelled`."""
    trained_tokens: int | None
    """Tokens that carried loss, counted over every epoch; null until the job ends."""
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    """Unix time (s) the job is expected to finish, while it runs."""
    integrations: list[Integration] | None = None
    metadata: dict[str, str] | None = None
    method: Method | None = None
    user_provided_suffix: str | None = None
    """The suffix as given."""

    @classmethod
    def from_row(cls, row: FineTuningJob) -> FineTuningJobObject:
        return cls(
            id=row.id,
            object="fine_tuning.job",
            created_at=row.created_at,
            error=JobError(**row.error) if row.error else None,
            fine_tuned_model=row.fine_tuned_model,
            finished_at=row.finished_at,
            hyperparameters=JobHyperparameters(
                **{k: v for k, v in method_hyperparameters(row).items() if k in JobHyperparameters.model_fields}
            ),
            model=row.model,
            organization_id=row.organization_id,
            result_files=list(row.result_files or []),
            seed=row.seed,
            status=row.status,  # type: ignore[arg-type]
            trained_tokens=row.trained_tokens,
            training_file=row.training_file,
            validation_file=row.validation_file,
            estimated_finish=row.estimated_finish if row.status == "running" else None,
            integrations=[Integration(**i) for i in row.integrations] if row.integrations else None,
            metadata=row.metadata_,
            method=Method(**row.method),
            user_provided_suffix=row.suffix,
        )


class FineTuningJobList(BaseModel):
    """A cursor page of jobs, newest first; the next page is `after=<last id>`."""

    object: Literal["list"]
    data: list[FineTuningJobObject]
    has_more: bool


class FineTuningJobEventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    """`metrics` events carry `data` {step, train_loss, train_mean_token_accuracy, valid_loss, …}."""
    data: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: FineTuningJobEvent) -> FineTuningJobEventObject:
        return cls(
            id=row.id,
            object="fine_tuning.job.event",
            created_at=row.created_at,
            level=row.level,  # type: ignore[arg-type]
            message=row.message,
            type=row.type,  # type: ignore[arg-type]
            data=row.data,
        )


class FineTuningJobEventList(BaseModel):
    """Events newest first; the next page is `after=<last id>`."""

    object: Literal["list"]
    data: list[FineTuningJobEventObject]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpointObject(BaseModel):
    id: str
    """`ftckpt_…`."""
    object: Literal["fine_tuning.job.checkpoint"]
    created_at: int
    fine_tuned_model_checkpoint: str
    """`ft:…:ckpt-step-N`: a model name that serves this checkpoint."""
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics

    @classmethod
    def from_row(cls, row: FineTuningJobCheckpoint) -> FineTuningJobCheckpointObject:
        return cls(
            id=row.id,
            object="fine_tuning.job.checkpoint",
            created_at=row.created_at,
            fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint,
            fine_tuning_job_id=row.job_id,
            step_number=row.step_number,
            metrics=CheckpointMetrics(**row.metrics),
        )


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"]
    data: list[FineTuningJobCheckpointObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
