"""ftserve: a self-hosted fine-tuning service that speaks OpenAI's API.

`service` is the control plane. Its light modules (`settings`, `ids`, `errors`, `db`, `storage`,
`keys`, `datasets`) are plain Python that the trainer and inference roles import too; only
`service.api` imports the web framework.
"""

__version__ = "0.1.0"
