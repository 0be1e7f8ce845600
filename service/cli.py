"""The `ftserve` command: run the service, manage keys, print the OpenAPI document.

    ftserve up [--host H] [--port P] [--data-dir DIR] [--workers N] [--no-inference]
    ftserve worker
    ftserve inference --base-model NAME [--host H] [--port P]
    ftserve keys create --org NAME [--admin] [--expires-in DAYS] [--data-dir DIR]
    ftserve keys list [--org NAME] [--data-dir DIR]
    ftserve keys revoke KEY_ID [--data-dir DIR]
    ftserve db upgrade [--data-dir DIR]
    ftserve models list | add NAME --source S [--chat-template F] [--alias A]… [--task embed] [--data-dir DIR]
    ftserve openapi > openapi/openapi.json

Every command reads the same settings (`FTSERVE_*`, `DATABASE_URL`, `REDIS_URL`, `STORAGE_URL`);
flags override them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service.settings import Settings
from service.webhooks.commands import add_commands as add_webhook_commands

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from service.db.models import ApiKey

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def cmd_up(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api.app import create_app
    from service.db import upgrade_database
    from service.embedded import (
        InferenceFleet,
        Supervisor,
        new_inference_key,
        private_data_dir,
        start_private_redis,
        start_workers,
    )
    from service.invalidation import announce_redis_url

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    def say(message: str) -> None:
        print(f"ftserve: {message}", file=sys.stderr, flush=True)

    say(f"data in {private_data_dir(settings)}")
    os.environ["FTSERVE_DATA_DIR"] = str(settings.resolved_data_dir())  # for what reads the environment alone
    if not settings.inference_api_key:
        settings = settings.model_copy(update={"inference_api_key": new_inference_key()})
    say(f"database {settings.resolved_database_url().split('@')[-1]}")
    say(f"storage {settings.resolved_storage_url()}")
    upgrade_database(settings)
    supervisor = Supervisor(say)
    try:
        if not settings.redis_url:
            url = start_private_redis(supervisor, settings.resolved_data_dir() / "redis")
            settings = settings.model_copy(update={"redis_url": url})
            say(f"private Redis on {url.split('@')[-1]} (password in {settings.resolved_data_dir() / 'redis.url'})")
        else:
            say(f"Redis {settings.redis_url.split('@')[-1]}")
        announce_redis_url(settings, settings.redis_url)  # where `ftserve keys revoke` announces revocations
        # The API reads this dict on every request; the fleet adds and removes its servers in place.
        settings = settings.model_copy(update={"inference_urls": dict(settings.inference_urls)})
        if not args.no_inference:
            fleet = InferenceFleet(supervisor, settings, settings.inference_urls, say)
            fleet.sync()
            supervisor.hooks.append(fleet.sync)
        start_workers(supervisor, args.workers, settings)
        say(f"{args.workers} trainer worker(s)")
        supervisor.run()
        say(f"API on http://{settings.host}:{settings.port}/v1")
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=False)
    finally:
        say("stopping")
        announce_redis_url(settings, None)
        supervisor.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # A separate interpreter image: the API process never imports torch.
    os.execv(sys.executable, [sys.executable, "-m", "trainer.worker"])  # noqa: S606
    return 0  # not reached


def cmd_inference(args: argparse.Namespace) -> int:
    argv = ["--base-model", args.base_model, "--host", args.host, "--port", str(args.port)]
    os.execv(sys.executable, [sys.executable, "-m", "inference.server", *argv])  # noqa: S606
    return 0  # not reached


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from service.db import upgrade_database

    upgrade_database(_settings(args))
    return 0


def _with_database(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Runs `work(session)` on a migrated database and returns its result."""
    from service.db import create_engine, create_sessionmaker, upgrade_database

    upgrade_database(settings)

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _when(timestamp: int | None) -> str:
    import datetime

    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_keys_create(args: argparse.Namespace) -> int:
    from service.ids import now_s
    from service.keys import create_key

    if args.expires_in is not None and args.expires_in <= 0:
        print("ftserve: --expires-in must be a positive number of days", file=sys.stderr)
        return 2
    expires_at = None if args.expires_in is None else now_s() + round(args.expires_in * 86400)

    async def work(session: AsyncSession) -> tuple[str, str, str, str]:
        org, row, key = await create_key(session, args.org, admin=args.admin, expires_at=expires_at)
        await session.commit()
        return org.id, org.name, row.id, key

    try:
        org_id, org_name, key_id, key = _with_database(_settings(args), work)
    except ValueError as exc:
        print(f"ftserve: {exc}", file=sys.stderr)
        return 2
    print(f"organization: {org_name} ({org_id})")
    print(f"key id: {key_id}{' (admin)' if args.admin else ''}; expires: {_when(expires_at)}")
    print("Store this key now; it is not shown again.")
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from service.keys import list_keys

    async def work(session: AsyncSession) -> list[tuple[ApiKey, str]]:
        return await list_keys(session, args.org)

    rows = _with_database(_settings(args), work)
    print("id\torganization\tcreated\tlast_used\trevoked\texpires\tadmin")
    for key, org_name in rows:
        times = (key.created_at, key.last_used_at, key.revoked_at, key.expires_at)
        print("\t".join([key.id, org_name, *map(_when, times), "yes" if key.is_admin else "no"]))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from service.invalidation import publish, redis_url_for
    from service.keys import revoke_key

    settings = _settings(args)

    async def work(session: AsyncSession) -> ApiKey | None:
        row = await revoke_key(session, args.key_id)
        await session.commit()
        return row

    row = _with_database(settings, work)
    if row is None:
        print(f"ftserve: no key {args.key_id!r} (see `ftserve keys list`)", file=sys.stderr)
        return 2
    print(f"revoked {row.id} at {_when(row.revoked_at)}")
    # Committed first, announced second: a process that drops its cached entry re-reads the revoked row.
    url = redis_url_for(settings)
    if url is None:
        print(f"no running service found (no REDIS_URL, no {settings.resolved_data_dir() / 'redis.url'})")
        return 0
    try:
        listeners = asyncio.run(publish(url, "api_key", row.id))
    except Exception as exc:
        print(
            f"ftserve: could not reach Redis ({exc}); API processes that cannot reach it either refuse the key "
            f"within a second, others within {settings.key_cache_s:g} s",
            file=sys.stderr,
        )
        return 0
    print(f"{listeners} API process(es) told to drop it")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from service.catalog import load_catalog

    for model in load_catalog(_settings(args)).models:
        aliases = f" (aliases: {', '.join(model.aliases)})" if model.aliases else ""
        task = " [embed]" if model.task == "embed" else ""
        print(f"{model.name}\t{model.source}{task}{aliases}")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    from service.catalog import PRETRAINED_DEFAULTS, PRETRAINED_LEARNING_RATE, BaseModel, save_entry

    settings = _settings(args)
    source, weights, template = args.source, None, None
    if not args.source.startswith("builtin:") and not args.skip_check:
        checked = _check_model_source(args, settings)
        if not checked.get("ok"):
            print(f"ftserve: {checked.get('error') or 'the model could not be checked'}", file=sys.stderr)
            return 2
        source, weights, template = checked["source"], checked.get("weights"), checked.get("chat_template")
        what = checked.get("architecture", "")
        if checked.get("parameters"):
            what += f", {checked['parameters'] / 1e6:,.0f}M parameters"
        print(f"checked {args.source}: {what}" + (f"; converted and stored at {weights}" if weights else ""))
    elif args.chat_template:
        template = Path(args.chat_template).read_text()
    pretrained = args.task == "generate" and not args.source.startswith("builtin:")
    if args.learning_rate is None and pretrained:
        args.learning_rate = PRETRAINED_LEARNING_RATE
    entry = BaseModel(
        name=args.name,
        source=source,
        aliases=tuple(args.alias or ()),
        serve=not args.no_serve,
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),
        max_seq_len=args.max_seq_len,
        tool_call_parser=args.tool_call_parser,
        task=args.task,
        weights=weights,
        chat_template=template,
        auto=PRETRAINED_DEFAULTS if pretrained else None,
    )
    try:
        save_entry(settings, entry)
    except ValueError as exc:
        print(f"ftserve: {exc}", file=sys.stderr)
        return 2
    print(f"added {entry.name} -> {entry.source}")
    return 0


def _check_model_source(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run the trainer's check (and GGUF conversion) in a subprocess: this process never imports
    torch or transformers. Its last line of output is the JSON answer."""
    argv = [sys.executable, "-m", "trainer.model_import", "--name", args.name, "--source", args.source,
            "--task", args.task, *(["--chat-template", args.chat_template] if args.chat_template else [])]  # fmt: skip
    env = {**os.environ, "FTSERVE_DATA_DIR": str(settings.resolved_data_dir())}
    slow = " (converting a GGUF takes a minute or more)" if args.source.endswith(".gguf") else ""
    print(f"checking {args.source}{slow}…", file=sys.stderr)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        if "No module named" in done.stderr:
            return {"ok": False, "error": "checking a model needs the trainer extra (torch, transformers): install "
                    "`ftserve[trainer]`, or pass --skip-check to add it unchecked"}  # fmt: skip
        return {"ok": False, "error": f"the model check failed: {done.stderr.strip()[-800:]}"}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def cmd_config(args: argparse.Namespace) -> int:
    from service.settings import ROLES
    from service.settings.describe import describe

    for role in [args.role] if args.role else list(ROLES):
        print(f"# {role}")
        print("\n".join(describe(ROLES[role])))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from service.api.app import create_app

    schema = create_app(Settings()).openapi_schema.to_schema()
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftserve", description="Self-hosted, OpenAI-compatible fine-tuning.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_data_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--data-dir", type=Path, help="where SQLite and local storage live (FTSERVE_DATA_DIR)")
        return p

    up = with_data_dir(sub.add_parser("up", help="run the service in the foreground"))
    up.add_argument("--host", help="interface to listen on (FTSERVE_HOST, default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to listen on (FTSERVE_PORT, default 8000)")
    up.add_argument("--workers", type=int, default=1, help="trainer workers to run beside the API (default 1)")
    up.add_argument("--no-inference", action="store_true", help="start no inference servers")
    up.set_defaults(func=cmd_up)

    worker = sub.add_parser("worker", help="run a trainer worker (needs REDIS_URL and the trainer extra)")
    worker.set_defaults(func=cmd_worker)

    inference = sub.add_parser("inference", help="run the vLLM server of one base model (the inference extra)")
    inference.add_argument("--base-model", required=True, help="catalogue name of the base model")
    inference.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    inference.add_argument("--port", type=int, default=8100, help="port to listen on (default 8100)")
    inference.set_defaults(func=cmd_inference)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = with_data_dir(keys.add_parser("create", help="create a key; the key is the last line printed"))
    create.add_argument("--org", required=True, help="organisation the key belongs to (created if new)")
    create.add_argument("--admin", action="store_true", help="the key may also manage what the organisation shares")
    create.add_argument("--expires-in", type=float, metavar="DAYS", help="the key stops working after DAYS days")
    create.set_defaults(func=cmd_keys_create)
    listing = with_data_dir(keys.add_parser("list", help="list keys (never the keys themselves)"))
    listing.add_argument("--org", help="only this organisation's keys")
    listing.set_defaults(func=cmd_keys_list)
    revoke = with_data_dir(keys.add_parser("revoke", help="revoke a key; every API process refuses it within 1 s"))
    revoke.add_argument("key_id", help="the key's id (`key_…`, from `ftserve keys list`)")
    revoke.set_defaults(func=cmd_keys_revoke)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    with_data_dir(db.add_parser("upgrade", help="apply migrations")).set_defaults(func=cmd_db_upgrade)

    models = sub.add_parser("models", help="the base-model catalogue").add_subparsers(
        dest="models_command", required=True
    )
    with_data_dir(models.add_parser("list", help="list base models")).set_defaults(func=cmd_models_list)
    add = with_data_dir(models.add_parser("add", help="add or replace a base model"))
    add.add_argument("name", help="public name, used in fine-tuned model ids")
    add.add_argument("--source", required=True, help="a .gguf file, a model directory, a Hugging Face id, or builtin:…")
    add.add_argument("--alias", action="append", help="another name that resolves to this model (repeatable)")
    add.add_argument("--no-serve", action="store_true", help="do not start an inference server for it")
    add.add_argument(
        "--learning-rate", type=float, default=None, help="base learning rate (default: 1e-3 for a pretrained model)"
    )
    add.add_argument("--max-seq-len", type=int, default=4096, help="training truncation length (default 4096)")
    add.add_argument("--tool-call-parser", help="vLLM tool-call parser for the model (hermes, llama3_json, …)")
    add.add_argument("--task", choices=["generate", "embed"], default="generate",
                     help="embed: an embeddings model, served on /v1/embeddings (default generate)")  # fmt: skip
    add.add_argument("--chat-template", metavar="FILE",
                     help="a Jinja chat template, for a model whose tokenizer has none (or to replace it)")  # fmt: skip
    add.add_argument("--skip-check", action="store_true",
                     help="add without loading the model (workers and inference servers still check it)")  # fmt: skip
    add.set_defaults(func=cmd_models_add)

    add_webhook_commands(sub, with_data_dir, lambda args, work: _with_database(_settings(args), work))

    config = sub.add_parser("config", help="print a role's settings: variable, value (secrets hidden), meaning")
    config.add_argument("--role", choices=["api", "worker", "inference"], help="only this role's (default: each)")
    config.set_defaults(func=cmd_config)

    openapi = sub.add_parser("openapi", help="print the service's OpenAPI document")
    openapi.add_argument("-o", "--output", help="write to this file instead of stdout")
    openapi.set_defaults(func=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not cmd_openapi:
        # What ftserve creates (data dir, database, logs, objects, Redis's password) is its user's alone.
        os.umask(0o077)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
