"""The Evals API's reads and writes, each filtered on the caller's organisation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Eval, EvalRun, EvalRunOutputItem, File, Organization
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.evals import shapes
from service.evals.runner import ACTIVE, enqueue_run
from service.evals.sampler import GatewaySampler
from service.graders import GradingOptions
from service.ids import new_id, now_s
from service.storage import ObjectStorage
from service.webhooks import outbox

log = logging.getLogger("ftserve.evals")


class EvalStore:
    def __init__(self, session: AsyncSession, organization: Organization) -> None:
        self.session = session
        self.organization = organization

    def evals(self) -> Any:
        return select(Eval).where(Eval.organization_id == self.organization.id)

    def runs(self, eval_id: str) -> Any:
        return select(EvalRun).where(EvalRun.organization_id == self.organization.id, EvalRun.eval_id == eval_id)

    def items(self, eval_id: str, run_id: str) -> Any:
        return select(EvalRunOutputItem).where(
            EvalRunOutputItem.organization_id == self.organization.id,
            EvalRunOutputItem.eval_id == eval_id,
            EvalRunOutputItem.run_id == run_id,
        )

    async def get_eval(self, eval_id: str) -> Eval:
        row = await self.session.scalar(self.evals().where(Eval.id == eval_id))
        if row is None:
            raise NotFoundError(f"No such Eval object: {eval_id}", param="eval_id", code="not_found")
        return row

    async def get_run(self, eval_id: str, run_id: str) -> EvalRun:
        row = await self.session.scalar(self.runs(eval_id).where(EvalRun.id == run_id))
        if row is None:
            raise NotFoundError(f"No such EvalRun object: {run_id}", param="run_id", code="not_found")
        return row

    async def get_item(self, eval_id: str, run_id: str, item_id: str) -> EvalRunOutputItem:
        row = await self.session.scalar(self.items(eval_id, run_id).where(EvalRunOutputItem.id == item_id))
        if row is None:
            raise NotFoundError(f"No such EvalRunOutputItem object: {item_id}", param="output_item_id")
        return row

    async def create_eval(self, body: dict[str, Any], options: GradingOptions) -> Eval:
        config = shapes.check_data_source_config(body.get("data_source_config"))
        criteria = await shapes.check_testing_criteria(body.get("testing_criteria"), options)
        row = Eval(id=new_id("eval"), organization_id=self.organization.id, name=str(body.get("name") or ""),
                   metadata_=shapes.check_metadata(body.get("metadata")), data_source_config=config,
                   testing_criteria=criteria, created_at=now_s())  # fmt: skip
        self.session.add(row)
        await self.session.commit()
        return row

    async def update_eval(self, eval_id: str, body: dict[str, Any]) -> Eval:
        row = await self.get_eval(eval_id)
        if "name" in body:
            row.name = str(body["name"] or "")
        if "metadata" in body:
            row.metadata_ = shapes.check_metadata(body["metadata"])
        await self.session.commit()
        return row

    async def delete_eval(self, eval_id: str) -> None:
        row = await self.get_eval(eval_id)
        # Explicit, not only ON DELETE CASCADE: a running run sees its row gone and stops.
        await self.session.execute(delete(EvalRunOutputItem).where(EvalRunOutputItem.eval_id == row.id))
        await self.session.execute(delete(EvalRun).where(EvalRun.eval_id == row.id))
        await self.session.delete(row)
        await self.session.commit()

    async def create_run(self, eval_id: str, body: dict[str, Any], sampler: GatewaySampler, storage: ObjectStorage,
                         queue: ArqRedis, max_items: int) -> EvalRun:  # fmt: skip
        evaluation = await self.get_eval(eval_id)
        source = shapes.check_run_data_source(body.get("data_source"))
        inner = source["source"]
        count = len(inner.get("content") or [])
        if inner["type"] == "file_id":
            query = select(File).where(File.id == inner["id"], File.organization_id == self.organization.id)
            file = await self.session.scalar(query)
            if file is None:
                raise InvalidRequestError(f"No such File object: {inner['id']}", param="data_source.source.id")
            if file.purpose != "evals":
                raise InvalidRequestError(f"The file {file.id} has purpose {file.purpose!r}; eval data files are "
                                          "uploaded with purpose `evals`.", param="data_source.source.id")  # fmt: skip
            count = await asyncio.to_thread(_count_lines, storage, file.storage_key)
        if count > max_items:
            raise InvalidRequestError(
                f"A run has at most {max_items} items (FTSERVE_EVAL_MAX_ITEMS); this one has {count}.",
                param="data_source.source",
                code="too_many_items",
            )
        model = source.get("model") or ""
        if source["type"] == "completions":
            await sampler.check_model(model)
        row = EvalRun(id=new_id("evalrun"), eval_id=evaluation.id, organization_id=self.organization.id,
                      name=str(body.get("name") or f"{model or 'jsonl'}-run"), model=model,
                      metadata_=shapes.check_metadata(body.get("metadata")), data_source=source, status="queued",
                      result_counts=shapes.empty_counts(), per_testing_criteria_results=[], per_model_usage=[],
                      created_at=now_s())  # fmt: skip
        self.session.add(row)
        await self.session.commit()
        # A failed enqueue still answers the run: the recovery loop enqueues what Redis lacks.
        try:
            await enqueue_run(queue, row.id)
        except Exception:
            log.warning("eval run %s not enqueued; the recovery loop will", row.id, exc_info=True)
        return row

    async def cancel_run(self, eval_id: str, run_id: str) -> EvalRun:
        row = await self.get_run(eval_id, run_id)
        if row.status not in (*ACTIVE, "canceled"):
            raise ConflictError(f"The run is {row.status}; only queued or running runs can be canceled.",
                                param="run_id")  # fmt: skip
        won = await self.session.execute(update(EvalRun).where(EvalRun.id == row.id, EvalRun.status.in_(ACTIVE))
                                         .values(status="canceled"))  # fmt: skip
        if won.rowcount:  # type: ignore[attr-defined]
            await outbox.record(self.session, row.organization_id, "eval.run.canceled", row.id)
        await self.session.commit()
        await self.session.refresh(row)
        return row

    async def delete_run(self, eval_id: str, run_id: str) -> None:
        row = await self.get_run(eval_id, run_id)
        await self.session.execute(delete(EvalRunOutputItem).where(EvalRunOutputItem.run_id == row.id))
        await self.session.delete(row)
        await self.session.commit()


def _count_lines(storage: ObjectStorage, key: str) -> int:
    return sum(1 for chunk in storage.read_chunks(key) for line in chunk.splitlines() if line.strip())
