"""Commands that run or administer a server: ``serve`` and ``users``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import InputError
from . import app

users_app = typer.Typer(help="Manage the server's users and their API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _private_home(settings) -> None:
    """What the server writes is its owner's only: a umask for every file made from here on, and a private home.

    The umask covers files made by code that does not ask for private modes
    itself (libraries, the model environments' installer, worker processes).
    A home that exists with looser modes (made by hand, or by an older Ancho)
    is tightened, and the log says so.
    """
    import logging
    import os

    from ..files import PRIVATE_UMASK, private_dir, tighten

    os.umask(PRIVATE_UMASK)
    try:
        private_dir(settings.home)
        old = tighten(settings.home)
    except OSError as exc:
        raise InputError(
            f"cannot use '{settings.home}' as the Ancho home: {exc.strerror or exc}; "
            "set ANCHO_HOME to a folder of yours"
        ) from None
    if old is not None:
        logging.getLogger("ancho.server").warning(
            "the home %s was open to other accounts (mode %o): now 0%o, its owner's only",
            settings.home,
            old,
            old & 0o700,
        )


def _users(config: Path | None):
    """The server's users; on a server with a Cassandra store, adding one creates their keyspace and role at once."""
    from ..server.settings import Settings
    from ..server.users import users_for

    settings = Settings.load(config)
    _private_home(settings)
    return users_for(settings)


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8642)."),
    config: Path | None = typer.Option(None, "--config", help="A TOML file with settings (also $ANCHO_CONFIG)."),
    store: str | None = typer.Option(
        None, "--store", metavar="URL", help="Result store (default: the embedded store in $ANCHO_HOME)."
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Runs executing at the same time (default 2)."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes per run (default: all cores)."),
    spark_master: str | None = typer.Option(
        None,
        "--spark-master",
        metavar="URL",
        help="A Spark master runs may name as their executor besides 'local' (also $ANCHO_SPARK_MASTER).",
    ),
) -> None:
    """Serve the REST API (and web site) and execute submitted runs."""
    import logging

    import uvicorn

    from ..server.app import create_app
    from ..server.settings import Settings

    settings = Settings.load(
        config, host=host, port=port, store=store, concurrency=concurrency, workers=workers, spark_master=spark_master
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _private_home(settings)
    # Bind first: a busy port must stop us before the app starts (and its dispatcher takes queued runs).
    import socket

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; choose another --port"
        ) from None
    sock.set_inheritable(True)
    logging.getLogger("ancho.server").info(
        "listening on http://%s:%d (REST API under /api/v1)", settings.host, sock.getsockname()[1]
    )
    # proxy_headers=False: X-Forwarded-* count only from the proxies the setting trusted_proxies names, which the
    # app itself handles (server/app.py); Uvicorn would otherwise believe anyone connecting from 127.0.0.1
    server_config = uvicorn.Config(
        create_app(settings), log_level=settings.log_level, timeout_graceful_shutdown=10, proxy_headers=False
    )
    uvicorn.Server(server_config).run(sockets=[sock])


@users_app.command("add")
def users_add(name: str, config: Path | None = typer.Option(None, "--config")) -> None:
    """Create a user; prints the API token (shown once) as the last line."""
    token = _users(config).add(name)
    print(f"user '{name}' created; keep this token, it is shown only once:", file=sys.stderr)
    print(token)


@users_app.command("list")
def users_list(
    config: Path | None = typer.Option(None, "--config"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """List users (never their tokens)."""
    rows = _users(config).list()
    if as_json:
        print(json.dumps(rows))
        return
    from rich.table import Table

    from .render import out_console, when

    t = Table()
    for col in ("user", "created", "revoked"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], when(r["created"]), when(r["revoked"]) if r["revoked"] else "")
    out_console.print(t)


@users_app.command("revoke")
def users_revoke(name: str, config: Path | None = typer.Option(None, "--config")) -> None:
    """Revoke a user's token at once (``users add`` gives them a new one)."""
    _users(config).revoke(name)
    print(f"user '{name}': token revoked", file=sys.stderr)
