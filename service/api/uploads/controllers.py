"""HTTP handlers of `/v1/uploads`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.api.multipart import read_multipart
from service.api.openapi_docs import ERROR_RESPONSES, MULTIPART_PART_BODY, UPLOAD_ERROR_RESPONSES
from service.api.uploads.schemas import (
    CompleteUploadRequest,
    CreateUploadRequest,
    UploadObject,
    UploadPartObject,
)
from service.api.uploads.services import UploadService
from service.errors import InvalidRequestError


class UploadController(Controller):
    path = "/v1/uploads"
    tags = ["Uploads"]

    @post(responses=ERROR_RESPONSES, operation_id="createUpload", summary="Create an upload", status_code=200)
    async def create_upload(
        self, data: JSONBody[CreateUploadRequest], upload_service: NamedDependency[UploadService]
    ) -> UploadObject:
        row = await upload_service.create(
            bytes_=data.bytes,
            filename=data.filename,
            mime_type=data.mime_type,
            purpose=data.purpose,
            expires_after_s=data.expires_after.seconds if data.expires_after else None,
        )
        return UploadObject.from_row(row)

    @post(
        "/{upload_id:str}/parts",
        responses=UPLOAD_ERROR_RESPONSES,
        operation_id="addUploadPart",
        summary="Add a part to an upload",
        status_code=200,
        operation_class=MULTIPART_PART_BODY,
    )
    async def add_upload_part(
        self,
        upload_id: FromPath[str],
        request: Request[Any, Any, State],
        upload_service: NamedDependency[UploadService],
        state: State,
    ) -> UploadPartObject:
        await upload_service.get(upload_id)  # 404 before reading a body for an unknown upload
        await upload_service.release_connection()  # and no connection held while the body arrives
        form = await read_multipart(request, file_field="data", max_file_bytes=state.settings.max_part_bytes)
        try:
            if form.file is None:
                raise InvalidRequestError("Missing required parameter: 'data'.", param="data")
            part = await upload_service.add_part(upload_id, form.file.path, form.file.size)
        finally:
            if form.file is not None:
                form.file.discard()
        return UploadPartObject.from_row(part)

    @post(
        "/{upload_id:str}/complete",
        responses=ERROR_RESPONSES,
        operation_id="completeUpload",
        summary="Complete an upload",
        status_code=200,
    )
    async def complete_upload(
        self,
        upload_id: FromPath[str],
        data: JSONBody[CompleteUploadRequest],
        upload_service: NamedDependency[UploadService],
    ) -> UploadObject:
        upload, file = await upload_service.complete(upload_id, data.part_ids, data.md5)
        return UploadObject.from_row(upload, file)

    @post(
        "/{upload_id:str}/cancel",
        responses=ERROR_RESPONSES,
        operation_id="cancelUpload",
        summary="Cancel an upload",
        status_code=200,
    )
    async def cancel_upload(
        self, upload_id: FromPath[str], upload_service: NamedDependency[UploadService]
    ) -> UploadObject:
        upload = await upload_service.cancel(upload_id)
        return UploadObject.from_row(upload)
