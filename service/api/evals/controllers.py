"""HTTP handlers of `/v1/evals`: parse, call `service.evals.store`, shape the answer."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.evals.schemas import (
    CreateEvalRequest,
    CreateEvalRunRequest,
    EvalDeleted,
    EvalList,
    EvalObject,
    EvalRunDeleted,
    EvalRunList,
    EvalRunObject,
    OutputItemList,
    OutputItemObject,
    UpdateEvalRequest,
)
from service.api.graders.controllers import grading_options
from service.api.openapi_docs import ERROR_RESPONSES
from service.api.pagination import cursor_page
from service.db.models import Eval, EvalRun, EvalRunOutputItem, Organization
from service.errors import InvalidRequestError
from service.evals import shapes
from service.evals.sampler import GatewaySampler
from service.evals.store import EvalStore

Session = NamedDependency[AsyncSession]
Org = NamedDependency[Organization]


def _page_args(limit: int, order: str) -> None:
    if not 1 <= limit <= 100:
        raise InvalidRequestError("`limit` must be between 1 and 100.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}  # fmt: skip


def _run(row: EvalRun, request: Request[Any, Any, Any]) -> dict[str, Any]:
    return shapes.run_object(row, str(request.base_url))


class EvalController(Controller):
    path = "/v1/evals"
    tags = ["Evals"]

    @post(responses=ERROR_RESPONSES, operation_id="createEval", summary="Create an eval", status_code=200)
    async def create_eval(
        self, data: JSONBody[CreateEvalRequest], db_session: Session, organization: Org, state: State
    ) -> EvalObject:
        body = data.model_dump(exclude_unset=True)
        row = await EvalStore(db_session, organization).create_eval(body, grading_options(state, organization))
        return EvalObject.model_validate(shapes.eval_object(row))

    @get(responses=ERROR_RESPONSES, operation_id="listEvals", summary="List evals")
    async def list_evals(
        self, db_session: Session, organization: Org, after: FromQuery[str | None] = None,
        limit: FromQuery[int] = 20, order: FromQuery[str] = "asc",
    ) -> EvalList:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        page = await cursor_page(db_session, store.evals(), Eval, limit=limit, order=order, after=after)
        return EvalList.model_validate(_page([shapes.eval_object(r) for r in page.items], page.has_more))

    @get("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="getEval", summary="Retrieve an eval")
    async def get_eval(self, eval_id: FromPath[str], db_session: Session, organization: Org) -> EvalObject:
        return EvalObject.model_validate(
            shapes.eval_object(await EvalStore(db_session, organization).get_eval(eval_id))
        )

    @post("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="updateEval", summary="Update an eval",
          status_code=200)  # fmt: skip
    async def update_eval(
        self, eval_id: FromPath[str], data: JSONBody[UpdateEvalRequest], db_session: Session, organization: Org
    ) -> EvalObject:
        row = await EvalStore(db_session, organization).update_eval(eval_id, data.model_dump(exclude_unset=True))
        return EvalObject.model_validate(shapes.eval_object(row))

    @delete("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="deleteEval", summary="Delete an eval",
            status_code=200)  # fmt: skip
    async def delete_eval(self, eval_id: FromPath[str], db_session: Session, organization: Org) -> EvalDeleted:
        await EvalStore(db_session, organization).delete_eval(eval_id)
        return EvalDeleted(object="eval.deleted", deleted=True, eval_id=eval_id)

    @post("/{eval_id:str}/runs", responses=ERROR_RESPONSES, operation_id="createEvalRun",
          summary="Create an eval run", status_code=200)  # fmt: skip
    async def create_run(
        self, request: Request[Any, Any, State], eval_id: FromPath[str], data: JSONBody[CreateEvalRunRequest],
        db_session: Session, organization: Org, state: State,
    ) -> EvalRunObject:  # fmt: skip
        sampler = GatewaySampler(
            state.sessionmaker, state.settings, state.http, organization, param="data_source.model"
        )
        row = await EvalStore(db_session, organization).create_run(
            eval_id, data.model_dump(exclude_unset=True), sampler, state.storage, state.queue,
            state.settings.eval_max_items,
        )  # fmt: skip
        return EvalRunObject.model_validate(_run(row, request))

    @get("/{eval_id:str}/runs", responses=ERROR_RESPONSES, operation_id="getEvalRuns", summary="List eval runs")
    async def list_runs(
        self, request: Request[Any, Any, State], eval_id: FromPath[str], db_session: Session, organization: Org,
        after: FromQuery[str | None] = None, limit: FromQuery[int] = 20, order: FromQuery[str] = "asc",
        status: FromQuery[str | None] = None,
    ) -> EvalRunList:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        await store.get_eval(eval_id)
        query = store.runs(eval_id) if status is None else store.runs(eval_id).where(EvalRun.status == status)
        page = await cursor_page(db_session, query, EvalRun, limit=limit, order=order, after=after)
        return EvalRunList.model_validate(_page([_run(r, request) for r in page.items], page.has_more))

    @get("/{eval_id:str}/runs/{run_id:str}", responses=ERROR_RESPONSES, operation_id="getEvalRun",
         summary="Retrieve an eval run")  # fmt: skip
    async def get_run(
        self, request: Request[Any, Any, State], eval_id: FromPath[str], run_id: FromPath[str], db_session: Session,
        organization: Org,
    ) -> EvalRunObject:  # fmt: skip
        row = await EvalStore(db_session, organization).get_run(eval_id, run_id)
        return EvalRunObject.model_validate(_run(row, request))

    @post("/{eval_id:str}/runs/{run_id:str}", responses=ERROR_RESPONSES, operation_id="cancelEvalRun",
          summary="Cancel an eval run", status_code=200)  # fmt: skip
    async def cancel_run(
        self, request: Request[Any, Any, State], eval_id: FromPath[str], run_id: FromPath[str], db_session: Session,
        organization: Org,
    ) -> EvalRunObject:  # fmt: skip
        row = await EvalStore(db_session, organization).cancel_run(eval_id, run_id)
        return EvalRunObject.model_validate(_run(row, request))

    # The path the SDKs call; the same operation as the spec's.
    @post("/{eval_id:str}/runs/{run_id:str}/cancel", responses=ERROR_RESPONSES, status_code=200,
          include_in_schema=False)  # fmt: skip
    async def cancel_run_sdk(
        self, request: Request[Any, Any, State], eval_id: FromPath[str], run_id: FromPath[str], db_session: Session,
        organization: Org,
    ) -> EvalRunObject:  # fmt: skip
        row = await EvalStore(db_session, organization).cancel_run(eval_id, run_id)
        return EvalRunObject.model_validate(_run(row, request))

    @delete("/{eval_id:str}/runs/{run_id:str}", responses=ERROR_RESPONSES, operation_id="deleteEvalRun",
            summary="Delete an eval run", status_code=200)  # fmt: skip
    async def delete_run(
        self, eval_id: FromPath[str], run_id: FromPath[str], db_session: Session, organization: Org
    ) -> EvalRunDeleted:
        await EvalStore(db_session, organization).delete_run(eval_id, run_id)
        return EvalRunDeleted(object="eval.run.deleted", deleted=True, run_id=run_id)

    @get("/{eval_id:str}/runs/{run_id:str}/output_items", responses=ERROR_RESPONSES,
         operation_id="getEvalRunOutputItems", summary="List a run's output items")  # fmt: skip
    async def list_items(
        self, eval_id: FromPath[str], run_id: FromPath[str], db_session: Session, organization: Org,
        after: FromQuery[str | None] = None, limit: FromQuery[int] = 20, order: FromQuery[str] = "asc",
        status: FromQuery[str | None] = None,
    ) -> OutputItemList:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        await store.get_run(eval_id, run_id)
        query = store.items(eval_id, run_id)
        if status is not None:
            query = query.where(EvalRunOutputItem.status == status)
        page = await cursor_page(db_session, query, EvalRunOutputItem, limit=limit, order=order, after=after)
        return OutputItemList.model_validate(_page([shapes.item_object(r) for r in page.items], page.has_more))

    @get("/{eval_id:str}/runs/{run_id:str}/output_items/{output_item_id:str}", responses=ERROR_RESPONSES,
         operation_id="getEvalRunOutputItem", summary="Retrieve an output item")  # fmt: skip
    async def get_item(
        self, eval_id: FromPath[str], run_id: FromPath[str], output_item_id: FromPath[str], db_session: Session,
        organization: Org,
    ) -> OutputItemObject:  # fmt: skip
        row = await EvalStore(db_session, organization).get_item(eval_id, run_id, output_item_id)
        return OutputItemObject.model_validate(shapes.item_object(row))
