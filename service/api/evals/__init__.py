"""`/v1/evals`, their runs and the runs' output items: OpenAI's Evals API over `service.evals`."""
