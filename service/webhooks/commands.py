"""`ftserve webhooks add|list|remove`: the subcommands, wired into `service.cli` by `add_commands`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI starts without importing the database layer
    from sqlalchemy.ext.asyncio import AsyncSession

RunWithDatabase = Callable[[argparse.Namespace, Callable[..., Awaitable[Any]]], Any]


def add_commands(
    sub: Any, with_data_dir: Callable[[argparse.ArgumentParser], argparse.ArgumentParser], run: RunWithDatabase
) -> None:
    """The `webhooks` group; `run(args, work)` runs `work(session)` on the configured database."""
    from service.webhooks import EVENT_TYPES

    hooks = sub.add_parser("webhooks", help="webhook endpoints of organisations").add_subparsers(
        dest="webhooks_command", required=True
    )
    add = with_data_dir(hooks.add_parser("add", help="add an endpoint; its signing secret is the last line printed"))
    add.add_argument("--org", required=True, help="the organisation whose events are sent")
    add.add_argument("--url", required=True, help="where events are POSTed (http or https)")
    add.add_argument("--event", action="append", choices=EVENT_TYPES, help="send only this type (repeatable)")
    add.set_defaults(func=lambda args: _add(args, run))
    listing = with_data_dir(hooks.add_parser("list", help="list endpoints (never their secrets)"))
    listing.add_argument("--org", help="only this organisation's endpoints")
    listing.set_defaults(func=lambda args: _list(args, run))
    remove = with_data_dir(hooks.add_parser("remove", help="remove an endpoint and its pending deliveries"))
    remove.add_argument("endpoint_id", help="the endpoint's id (`we_…`, from `ftserve webhooks list`)")
    remove.set_defaults(func=lambda args: _remove(args, run))


def _add(args: argparse.Namespace, run: RunWithDatabase) -> int:
    from service.webhooks.endpoints import add_endpoint

    async def work(session: AsyncSession) -> tuple[str, str, str]:
        org, row = await add_endpoint(session, args.org, args.url, args.event)
        await session.commit()
        return org.name, row.id, row.secret

    try:
        org_name, endpoint_id, secret = run(args, work)
    except ValueError as exc:
        print(f"ftserve: {exc}", file=sys.stderr)
        return 2
    print(f"endpoint: {endpoint_id} for organization {org_name}: {args.url}")
    print(f"events: {', '.join(args.event) if args.event else 'all'}")
    print("Store this signing secret now; it is not shown again.")
    print(secret)
    return 0


def _list(args: argparse.Namespace, run: RunWithDatabase) -> int:
    from service.webhooks.endpoints import list_endpoints

    rows = run(args, lambda session: list_endpoints(session, args.org))
    print("id\torganization\turl\tevents")
    for row, org_name in rows:
        print("\t".join([row.id, org_name, row.url, ",".join(row.event_types) if row.event_types else "all"]))
    return 0


def _remove(args: argparse.Namespace, run: RunWithDatabase) -> int:
    from service.webhooks.endpoints import remove_endpoint

    async def work(session: AsyncSession) -> bool:
        removed = await remove_endpoint(session, args.endpoint_id)
        await session.commit()
        return removed

    if not run(args, work):
        print(f"ftserve: no endpoint {args.endpoint_id!r} (see `ftserve webhooks list`)", file=sys.stderr)
        return 2
    print(f"removed {args.endpoint_id}")
    return 0
