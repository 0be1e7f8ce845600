"""Where a job's artefacts live in object storage; the one spelling the trainer, the gateway's
served-model lookup and the inference resolver share.

    jobs/{organisation}/{job}/
        adapter/                    the tuned model (a PEFT directory; `ftserve.json` written last)
        checkpoints/step-{n}/       an epoch checkpoint: adapter/ (servable) and state.pt
        pauses/step-{n}/            the training state a pause or a shutdown saved
        results/                    (reserved) result files live under `files/`, as every file
    models/{base}/{digest}/         a base model ftserve converted (from GGUF): config.json written last
"""

from __future__ import annotations


def job_prefix(organization_id: str, job_id: str) -> str:
    """Where a job's adapter, checkpoints and training state live.

    Example:
        >>> job_prefix("org-1", "ftjob-1")
        'jobs/org-1/ftjob-1/'
    """
    return f"jobs/{organization_id}/{job_id}/"


def adapter_prefix(organization_id: str, job_id: str) -> str:
    """The tuned model's adapter, as vLLM is asked for it by name."""
    return job_prefix(organization_id, job_id) + "adapter/"


def saved_state_prefix(job_storage_prefix: str, kind: str, step: int) -> str:
    """A checkpoint (`kind="checkpoints"`) or a pause's state (`kind="pauses"`) at `step`."""
    return f"{job_storage_prefix}{kind}/step-{step}/"


def saved_adapter_prefix(state_prefix: str) -> str:
    """The servable adapter inside a checkpoint (or pause) saved under `state_prefix`."""
    return state_prefix + "adapter/"


def is_adapter_name(name: str) -> bool:
    """Whether a model name asked of vLLM is an adapter's storage prefix (the job's or a checkpoint's)."""
    return name.startswith("jobs/") and name.endswith("/adapter/")


def base_model_prefix(name: str, digest: str) -> str:
    """A converted base model's directory, named by its catalogue name and a digest of its files.

    Example:
        >>> base_model_prefix("smollm2-135m", "0123abcd")
        'models/smollm2-135m/0123abcd/'
    """
    return f"models/{name}/{digest}/"
