"""What can go wrong while grading, in OpenAI's terms.

Two kinds: a grader that is itself invalid (a `GraderConfigError`, a 400 before anything runs),
and a grader that is valid but fails on one sample (a template naming a missing field, a python
grader that raises, a model answer that does not parse): those set a flag of `GraderErrors`,
reported in `metadata.errors`, and the reward is 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from service.errors import InvalidRequestError


class GraderConfigError(InvalidRequestError):
    """The grader definition cannot run at all (unknown type, bad operation, missing data)."""


@dataclass
class GraderErrors:
    """`metadata.errors` of a grader run, field for field as OpenAI reports it."""

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False

    def any(self) -> bool:
        return any(v is True for v in asdict(self).values())

    def merge(self, other: GraderErrors) -> None:
        """Fold a sub-grader's errors into these (flags or'ed, first details kept)."""
        for key, value in asdict(other).items():
            if value and not getattr(self, key):
                setattr(self, key, value)

    def as_dict(self) -> dict[str, bool | str | None]:
        return asdict(self)


class SampleFailure(Exception):
    """One sample could not be graded; `flag` names the `GraderErrors` field to set."""

    def __init__(self, flag: str, details: str | None = None) -> None:
        super().__init__(details or flag)
        self.flag = flag
        self.details = details

    def record(self, errors: GraderErrors) -> None:
        setattr(errors, self.flag, True)
        details_field = {
            "python_grader_runtime_error": "python_grader_runtime_error_details",
            "model_grader_server_error": "model_grader_server_error_details",
            "python_grader_server_error": "python_grader_server_error_type",
        }.get(self.flag)
        if details_field and self.details and not getattr(errors, details_field):
            setattr(errors, details_field, self.details[:2000])
