"""What a report says about a run, gathered once for the PDF and the notebook.

A report must work for every run a user can ask about, not only succeeded
ones: a failed or cancelled run has no summary, so :func:`gather` summarises
whatever sequences were stored (with the engine's own statistics, marked as
partial) and keeps the run's error and first failures, which is usually what
the reader needs to see.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..chunk import Failure
from ..present import client_traceback, run_duration
from ..present import number as fmt
from ..present import timestamp as when
from ..pysource import parse_module
from ..stores.base import RunRecord, Store

#: failed sequences listed with their tracebacks (the count is always given)
FAILURES_SHOWN = 20


@dataclass
class ReportData:
    record: RunRecord
    #: the run's summary, or (``partial``) one computed from the sequences stored so far; None if none were stored
    summary: dict | None
    partial: bool
    doc: str
    failures: list[Failure] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Sequences with results (the summary's count of sequences that did not fail)."""
        if self.summary is None:
            return 0
        return max(0, int(self.summary["sequences"]) - int(self.summary.get("failures") or 0))


def gather(store: Store, run_id: str, owner: str | None = None, failures: int = FAILURES_SHOWN) -> ReportData:
    """The record, summary, failures and docstring of a run (NotFound if ``owner`` is given and differs)."""
    record = store.get_run(run_id, owner=owner)
    summary, partial = record.summary, False
    if summary is None and record.schema and store.completed_ranges(run_id):
        summary, partial = partial_summary(store, record), True
    listed = store.failures(run_id, limit=failures) if record.failures else []
    root = record.spec.submission.root if record.spec.submission else ""
    if root:  # a server's run: no server folder in its tracebacks (as GET …/failures)
        listed = [replace(f, traceback=client_traceback(f.traceback, root)) for f in listed]
    return ReportData(record, summary, partial, model_doc(record), listed)


def partial_summary(store: Store, record: RunRecord) -> dict:
    """The summary statistics of the sequences stored for an unfinished, failed or cancelled run."""
    from ..expressions import Target
    from ..stats import build_summary

    targets = [Target.parse(t) for t in record.targets]
    columns = store.summary_columns(record.id)  # (outputs read in groups: each chunk file opened once a group)
    return build_summary(record.to_dict(), record.schema, columns.read, targets, read_blocks=columns.blocks)


def model_doc(record: RunRecord) -> str:
    """The model's docstring: as recorded with the run, or from the source file when it is unchanged.

    Local runs made before they recorded the model's description lack it, and
    a report must not import user code, so the class is found in the file's
    syntax tree; a file changed since the run (its hash differs) may describe
    another model, so it is not used.
    """
    doc = record.spec.info.get("doc")
    if doc:
        return str(doc)
    file, _, class_name = record.entry.rpartition(":")
    source = Path(record.source) if record.source and ":" not in record.source.split("/")[0] else None
    if source is None or not class_name:
        return ""
    try:
        from ..loading import hash_source

        path = source / file if source.is_dir() else source
        if not path.is_file() or hash_source(source) != record.source_hash:
            return ""
        tree = parse_module(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return ast.get_docstring(node) or ""
    return ""


def source_rows(record: RunRecord) -> list[tuple[str, str]]:
    """Where the model came from: git repository and commit, URL and archive hash, upload, or a path."""
    src = record.source or ""
    kind, _, rest = src.partition(":")
    if kind == "git" and "@" in rest:
        origin, _, commit = rest.rpartition("@")
        return [("Source", f"git {origin}"), ("Git commit", commit)]
    if kind == "url":
        origin, _, digest = rest.partition("#")
        return [("Source", origin), ("Archive", digest.replace("=", " ", 1))]
    if kind == "upload":
        return [("Source", f"upload {rest}")]
    return [("Source", src or "–")]


def run_rows(record: RunRecord) -> list[tuple[str, str]]:
    """The run's identity, provenance, settings and timings as (label, text) pairs."""
    r = record
    rows = [("Run", r.id), ("Status", r.status), ("Model", f"{r.model} ({r.entry})" if r.entry else r.model)]
    if r.block:
        rows.append(("Block", f"{fmt(r.block)} sequences a call (a batch model: its results depend on the block)"))
    rows += source_rows(r)
    rows.append(("Source hash", r.source_hash or "–"))
    rows.append(("Ancho version", r.ancho_version + (f" (NumPy {r.numpy_version})" if r.numpy_version else "")))
    rows.append(("Executor", r.executor + (f", {r.workers} workers" if r.workers else "")))
    rows.append(("Seed", str(r.seed)))
    asked = f"{fmt(r.sequences)} requested" if r.sequences else ""
    if r.until:
        asked = (
            f"until {r.until}"
            + (f", at most {fmt(r.max_sequences)}" if r.max_sequences else "")
            + (f"; first batch {fmt(r.sequences)}" if r.sequences else "")
        )
    rows.append(("Sequences", f"{fmt(r.done)} executed" + (f" ({asked})" if asked else "")))
    if r.targets:
        rows.append(("Targets", ", ".join(r.targets)))
    if r.owner and r.owner != "local":
        rows.append(("Owner", r.owner))
    rows += [
        ("Created", when(r.created)),
        ("Started", when(r.started)),
        ("Finished", when(r.finished)),
        ("Duration", run_duration(r.started, r.finished, r.status == "running")),
    ]
    rows.append(
        (
            "Failures",
            f"{fmt(r.failures)} (allowed {fmt(r.max_failures)})"
            + (f", {fmt(r.retries)} chunk retries" if r.retries else ""),
        )
    )
    if r.error:
        rows.append(("Error", r.error))
    return rows
