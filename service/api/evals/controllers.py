"""HTTP handlers of `/v1/evals`: parse, call `service.evals.store`, shape the answer."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.graders.controllers import grading_options
from service.api.openapi_docs import ERROR_RESPONSES
from service.api.pagination import cursor_page
from service.db.models import Eval, EvalRun, EvalRunOutputItem, Organization
from service.errors import InvalidRequestError
from service.evals import shapes
from service.evals.sampler import GatewaySampler
from service.evals.store import EvalStore


def _page_args(limit: int, order: str) -> None:
    if not 1 <= limit <= 100:
        raise InvalidRequestError("`limit` must be between 1 and 100.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}  # fmt: skip


def _base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url)


class EvalController(Controller):
    path = "/v1/evals"
    tags = ["Evals"]

    @post(responses=ERROR_RESPONSES, operation_id="createEval", summary="Create an eval", status_code=200)
    async def create_eval(self, data: JSONBody[dict[str, Any]], db_session: NamedDependency[AsyncSession],
                          organization: NamedDependency[Organization], state: State) -> dict[str, Any]:  # fmt: skip
        row = await EvalStore(db_session, organization).create_eval(data, grading_options(state, organization))
        return shapes.eval_object(row)

    @get(responses=ERROR_RESPONSES, operation_id="listEvals", summary="List evals")
    async def list_evals(self, db_session: NamedDependency[AsyncSession], organization: NamedDependency[Organization],
                         after: FromQuery[str | None] = None, limit: FromQuery[int] = 20,
                         order: FromQuery[str] = "asc") -> dict[str, Any]:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        page = await cursor_page(db_session, store.evals(), Eval, limit=limit, order=order, after=after)
        return _list([shapes.eval_object(r) for r in page.items], page.has_more)

    @get("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="getEval", summary="Retrieve an eval")
    async def get_eval(self, eval_id: FromPath[str], db_session: NamedDependency[AsyncSession],
                       organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        return shapes.eval_object(await EvalStore(db_session, organization).get_eval(eval_id))

    @post("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="updateEval", summary="Update an eval",
          status_code=200)  # fmt: skip
    async def update_eval(self, eval_id: FromPath[str], data: JSONBody[dict[str, Any]],
                          db_session: NamedDependency[AsyncSession],
                          organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        return shapes.eval_object(await EvalStore(db_session, organization).update_eval(eval_id, data))

    @delete("/{eval_id:str}", responses=ERROR_RESPONSES, operation_id="deleteEval", summary="Delete an eval",
            status_code=200)  # fmt: skip
    async def delete_eval(self, eval_id: FromPath[str], db_session: NamedDependency[AsyncSession],
                          organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        await EvalStore(db_session, organization).delete_eval(eval_id)
        return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}

    @post("/{eval_id:str}/runs", responses=ERROR_RESPONSES, operation_id="createEvalRun",
          summary="Create an eval run", status_code=200)  # fmt: skip
    async def create_run(self, request: Request[Any, Any, State], eval_id: FromPath[str],
                         data: JSONBody[dict[str, Any]], db_session: NamedDependency[AsyncSession],
                         organization: NamedDependency[Organization], state: State) -> dict[str, Any]:  # fmt: skip
        sampler = GatewaySampler(
            state.sessionmaker, state.settings, state.http, organization, param="data_source.model"
        )
        row = await EvalStore(db_session, organization).create_run(
            eval_id, data, sampler, state.storage, state.queue, state.settings.eval_max_items
        )
        return shapes.run_object(row, _base(request))

    @get("/{eval_id:str}/runs", responses=ERROR_RESPONSES, operation_id="getEvalRuns", summary="List eval runs")
    async def list_runs(self, request: Request[Any, Any, State], eval_id: FromPath[str],
                        db_session: NamedDependency[AsyncSession], organization: NamedDependency[Organization],
                        after: FromQuery[str | None] = None, limit: FromQuery[int] = 20, order: FromQuery[str] = "asc",
                        status: FromQuery[str | None] = None) -> dict[str, Any]:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        await store.get_eval(eval_id)
        query = store.runs(eval_id) if status is None else store.runs(eval_id).where(EvalRun.status == status)
        page = await cursor_page(db_session, query, EvalRun, limit=limit, order=order, after=after)
        return _list([shapes.run_object(r, _base(request)) for r in page.items], page.has_more)

    @get("/{eval_id:str}/runs/{run_id:str}", responses=ERROR_RESPONSES, operation_id="getEvalRun",
         summary="Retrieve an eval run")  # fmt: skip
    async def get_run(self, request: Request[Any, Any, State], eval_id: FromPath[str], run_id: FromPath[str],
                      db_session: NamedDependency[AsyncSession],
                      organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        return shapes.run_object(await EvalStore(db_session, organization).get_run(eval_id, run_id), _base(request))

    # The spec's path, and the one the SDKs call (`…/cancel`).
    @post(["/{eval_id:str}/runs/{run_id:str}", "/{eval_id:str}/runs/{run_id:str}/cancel"], responses=ERROR_RESPONSES,
          operation_id="cancelEvalRun",
          summary="Cancel an eval run", status_code=200)  # fmt: skip
    async def cancel_run(self, request: Request[Any, Any, State], eval_id: FromPath[str], run_id: FromPath[str],
                         db_session: NamedDependency[AsyncSession],
                         organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        row = await EvalStore(db_session, organization).cancel_run(eval_id, run_id)
        return shapes.run_object(row, _base(request))

    @delete("/{eval_id:str}/runs/{run_id:str}", responses=ERROR_RESPONSES, operation_id="deleteEvalRun",
            summary="Delete an eval run", status_code=200)  # fmt: skip
    async def delete_run(self, eval_id: FromPath[str], run_id: FromPath[str],
                         db_session: NamedDependency[AsyncSession],
                         organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        await EvalStore(db_session, organization).delete_run(eval_id, run_id)
        return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}

    @get("/{eval_id:str}/runs/{run_id:str}/output_items", responses=ERROR_RESPONSES,
         operation_id="getEvalRunOutputItems", summary="List a run's output items")  # fmt: skip
    async def list_items(self, eval_id: FromPath[str], run_id: FromPath[str],
                         db_session: NamedDependency[AsyncSession], organization: NamedDependency[Organization],
                         after: FromQuery[str | None] = None, limit: FromQuery[int] = 20, order: FromQuery[str] = "asc",
                         status: FromQuery[str | None] = None) -> dict[str, Any]:  # fmt: skip
        _page_args(limit, order)
        store = EvalStore(db_session, organization)
        await store.get_run(eval_id, run_id)
        query = store.items(eval_id, run_id)
        if status is not None:
            query = query.where(EvalRunOutputItem.status == status)
        page = await cursor_page(db_session, query, EvalRunOutputItem, limit=limit, order=order, after=after)
        return _list([shapes.item_object(r) for r in page.items], page.has_more)

    @get("/{eval_id:str}/runs/{run_id:str}/output_items/{output_item_id:str}", responses=ERROR_RESPONSES,
         operation_id="getEvalRunOutputItem", summary="Retrieve an output item")  # fmt: skip
    async def get_item(self, eval_id: FromPath[str], run_id: FromPath[str], output_item_id: FromPath[str],
                       db_session: NamedDependency[AsyncSession],
                       organization: NamedDependency[Organization]) -> dict[str, Any]:  # fmt: skip
        row = await EvalStore(db_session, organization).get_item(eval_id, run_id, output_item_id)
        return shapes.item_object(row)
