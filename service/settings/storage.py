"""Object storage: files, uploads, adapters and checkpoints."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from service.settings.common import CommonSettings


class StorageSettings(CommonSettings):
    """What every role that reads or writes objects reads (all three)."""

    storage_url: str | None = Field(default=None, validation_alias=AliasChoices("STORAGE_URL"))
    """Object storage: `file:///dir` or `s3://bucket/prefix`. Unset: `data_dir/objects`."""

    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FTSERVE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    """S3 endpoint for non-AWS stores (SeaweedFS, MinIO, Ceph). Unset: AWS."""

    s3_region: str = Field(default="us-east-1", validation_alias=AliasChoices("FTSERVE_S3_REGION", "AWS_REGION"))
    """Region passed to boto3; most non-AWS stores accept any value."""

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.resolved_data_dir() / "objects").as_uri()
