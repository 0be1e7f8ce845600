"""HTTP handlers of `/v1/files`: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from service.api.files.schemas import MAX_FILENAME_CHARS, FileDeleted, FileList, FileObject
from service.api.files.services import FileService, check_purpose, parse_expires_after
from service.api.multipart import read_multipart
from service.api.openapi_docs import ERROR_RESPONSES, MULTIPART_FILE_BODY, UPLOAD_ERROR_RESPONSES
from service.errors import InvalidRequestError
from service.storage import file_chunks


class FileController(Controller):
    path = "/v1/files"
    tags = ["Files"]

    @post(
        responses=UPLOAD_ERROR_RESPONSES,
        operation_id="createFile",
        summary="Upload a file",
        status_code=200,
        operation_class=MULTIPART_FILE_BODY,
    )
    async def create_file(
        self, request: Request[Any, Any, State], file_service: NamedDependency[FileService], state: State
    ) -> FileObject:
        await file_service.release_connection()  # no connection is held while the body arrives
        form = await read_multipart(request, file_field="file", max_file_bytes=state.settings.max_file_bytes)
        try:
            purpose = check_purpose(form.fields.get("purpose"))
            if form.file is None:
                raise InvalidRequestError("Missing required parameter: 'file'.", param="file")
            if len(form.file.filename) > MAX_FILENAME_CHARS:
                raise InvalidRequestError(
                    f"The file name is longer than {MAX_FILENAME_CHARS} characters.",
                    param="file",
                    code="string_too_long",
                )
            expires_after_s = parse_expires_after(
                form.fields.get("expires_after[anchor]"), form.fields.get("expires_after[seconds]")
            )
            row = await file_service.create(
                chunks=file_chunks(form.file.path),
                filename=form.file.filename,
                purpose=purpose,
                expires_after_s=expires_after_s,
                local_path=form.file.path,
            )
        finally:
            if form.file is not None:
                form.file.discard()
        return FileObject.from_row(row)

    @get(responses=ERROR_RESPONSES, operation_id="listFiles", summary="List files")
    async def list_files(
        self,
        file_service: NamedDependency[FileService],
        purpose: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 10000,
        order: FromQuery[Literal["asc", "desc"]] = "desc",
        after: FromQuery[str | None] = None,
    ) -> FileList:
        page = await file_service.list(purpose=purpose, limit=limit, order=order, after=after)
        data = [FileObject.from_row(row) for row in page.items]
        return FileList(
            object="list",
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=page.has_more,
        )

    @get("/{file_id:str}", responses=ERROR_RESPONSES, operation_id="retrieveFile", summary="Retrieve a file")
    async def retrieve_file(self, file_id: FromPath[str], file_service: NamedDependency[FileService]) -> FileObject:
        return FileObject.from_row(await file_service.get(file_id))

    @delete(
        "/{file_id:str}", responses=ERROR_RESPONSES, operation_id="deleteFile", summary="Delete a file", status_code=200
    )
    async def delete_file(self, file_id: FromPath[str], file_service: NamedDependency[FileService]) -> FileDeleted:
        await file_service.delete(file_id)
        return FileDeleted(id=file_id, object="file", deleted=True)

    @get(
        "/{file_id:str}/content",
        responses=ERROR_RESPONSES,
        operation_id="downloadFile",
        summary="Retrieve file content",
    )
    async def download_file(self, file_id: FromPath[str], file_service: NamedDependency[FileService]) -> Stream:
        row, chunks = await file_service.content(file_id)
        return Stream(
            chunks,
            media_type="application/octet-stream",
            headers={
                "content-length": str(row.bytes),
                "content-disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}",
            },
        )
