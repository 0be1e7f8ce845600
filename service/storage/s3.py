"""Object storage on any S3 endpoint through boto3 (AWS, SeaweedFS, MinIO, Ceph).

Large objects go up as multipart uploads of `PART_BYTES` parts; a failed stream aborts its
multipart upload, so nothing half-written ever becomes visible under the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from service.storage import CHUNK_BYTES, ObjectNotFound, file_chunks

PART_BYTES = 16 * 1024 * 1024
"""Multipart part size: above S3's 5 MiB minimum, small enough to bound memory per stream."""


class S3Storage:
    def __init__(self, *, bucket: str, prefix: str = "", endpoint_url: str | None, region: str) -> None:
        if not 3 <= len(bucket) <= 63:
            raise ValueError(f"S3 bucket name must have 3 to 63 characters: {bucket!r}")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (deployments usually pre-create it)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        buffer = bytearray()
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None
        written = 0
        try:
            for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                while len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))[
                            "UploadId"
                        ]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer[:PART_BYTES])))
                    del buffer[:PART_BYTES]
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(buffer))
                return written
            if buffer:
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
            raise
        return written

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self._key(key), UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def put_file(self, key: str, path: Path) -> int:
        return self.put_stream(key, file_chunks(path))

    def read_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise ObjectNotFound(key) from None
            raise
        with body:
            yield from body.iter_chunks(chunk_bytes)

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def list_keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return sorted(keys)
