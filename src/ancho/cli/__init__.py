"""The ``ancho`` command line (Typer + Rich).

Every error that Ancho raises on purpose ends the command with a one-line
reason on stderr and a non-zero exit; tracebacks are for bugs only.
"""

from __future__ import annotations

import logging
import sys

import typer

from ..errors import AnchoError

app = typer.Typer(
    name="ancho",
    help="Run stochastic simulation models: on this machine or a Spark cluster, every result kept and summarised.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"ancho {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print Ancho's version and exit."
    ),
) -> None:
    """Run stochastic simulation models: on this machine or a Spark cluster, every result kept and summarised."""
    logging.lastResort = _Said(logging.WARNING)


class _Said(logging.Handler):
    """Ancho's warnings (a block too heavy, Spark summarising in the driver) as the terminal's other lines say
    things, ``ancho: warning: …``: the handler Python uses when nothing configured logging (``ancho serve`` does,
    and its log lines keep their own format). It finds stderr when it writes: under a progress bar, Rich's."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"ancho: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - as logging's own handlers: a message that cannot be said is not an error
            self.handleError(record)


from . import local, studies, server, client, report, shell  # noqa: E402,F401,I001  (register their commands; this order is --help's order)


def fail(message: str, code: int = 2) -> typer.Exit:
    print(f"ancho: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except AnchoError as exc:
        print(f"ancho: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("ancho: interrupted", file=sys.stderr)
        sys.exit(130)
