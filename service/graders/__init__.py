"""Graders, as OpenAI defines them: a score for a model's output, shared by the API's
`/fine_tuning/alpha/graders`, the eval runner and (later) reinforcement fine-tuning.

Torch-free and free of the web layer: `check_grader` refuses an invalid definition with a
`GraderConfigError` (a 400), `grade` scores one sample and reports per-sample failures in
`GradeResult.errors` (OpenAI's `metadata.errors`), never by raising.
"""

from service.graders.errors import GraderConfigError, GraderErrors, SampleFailure
from service.graders.model import Sampled, Sampler, SamplerError, Usage
from service.graders.run import GradeResult, grade
from service.graders.sandbox import SandboxLimits
from service.graders.spec import RUNNABLE, TYPES, GradingOptions, check_grader
from service.graders.template import sample_namespace

__all__ = [
    "RUNNABLE", "TYPES", "GradeResult", "GraderConfigError", "GraderErrors", "GradingOptions", "SampleFailure",
    "Sampled", "Sampler", "SamplerError", "SandboxLimits", "Usage", "check_grader", "grade", "sample_namespace",
]  # fmt: skip
