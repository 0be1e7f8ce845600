"""`/v1/fine_tuning/alpha/graders/validate` and `/run`: OpenAI's grader endpoints over `service.graders`."""
