"""Running a study: each point an ordinary run, driven by the engine on one executor session.

On an executor that takes chunks of different runs interleaved (``mixed_tasks``: the local one) the
study's new points first run together (:mod:`.packed`), so a study costs its sequences rather than its
points; what that pass leaves (points with ``until``, resumed runs, a failed executor call) runs here
point after point, as described below.

Why one session: the workers start once for the whole study, and each point
is a :func:`ancho.engine.execute` of its own run record, so every promise of a
run holds per point unchanged (per-sequence reproducibility with the study's
seed, stored chunks kept on resume, retries, ``until`` per point). A point
that fails is recorded as failed and the study goes on; a cancel stops the
whole study. The study record (points → runs, progress) is written at most
every ``WRITE_EVERY`` seconds and at the end, not once per chunk, and no more
often than ``WRITE_SHARE`` times its last write took (:class:`~.pacing.Pacer`).

Resume: a point whose run succeeded is skipped; any other point's run is
executed again, which keeps its stored chunks (the engine resumes them).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..chunk import ChunkResult
from ..engine import RunHandle, RunSpec, create_record, execute, new_run_id
from ..errors import AnchoError, RunCancelled
from ..executors.base import Executor, Task
from ..inputs import RunSettings
from ..loading import LoadedModel
from ..stores.base import Store, StudyRecord
from ..stores.record_spec import RecordSpec
from .pacing import Pacer
from .packed import KEEP_IN_MEMORY, run_packed
from .plan import Point


@dataclass
class _Tally:
    """Sequences done and planned over the points finished so far, plus the point running now."""

    done: int = 0
    total: int = 0
    current_done: int = 0
    current_total: int = 0

    def now(self) -> tuple[int, int]:
        return self.done + self.current_done, self.total + self.current_total


def run_points(
    model: LoadedModel,
    study: StudyRecord,
    settings: RunSettings,
    store: Store,
    executor: Executor,
    executor_name: str,
    progress: Callable[[int, int], None] | None = None,
    handle: RunHandle | None = None,
    base_params: dict | None = None,
) -> StudyRecord:
    """Run every point of ``study`` (already in ``store``) that has not succeeded; return the final study record.

    Raises :class:`RunCancelled` when cancelled (the study is then ``cancelled``,
    or back to ``queued`` when ``handle.interrupt()`` was used). A failing point
    never raises: the study ends ``failed`` with the points that failed named.
    ``base_params``: every parameter's value (the model's defaults resolved with the study's ``params``);
    each point's run gets these with the point's values over them.
    """
    handle = handle or RunHandle()
    points = [dict(p) for p in study.points]
    tally = _Tally()
    pending = []
    for p in points:
        run = _run_of(store, p.get("run"))
        if run is not None and run.status == "succeeded":
            tally.done += run.done
            tally.total += run.total
            p["status"] = "succeeded"
        else:  # it runs again, a point that failed too
            if run is not None and run.status == "failed":
                # from its first sequence: its stored chunks hold the sequences that failed it, which a resume would
                # take as done (an interrupted point keeps its chunks: the engine resumes them)
                store.delete_run(run.id)
                run = None
            p["status"] = "queued"
            p.pop("error", None)
            pending.append(p)
            tally.total += (run.total if run is not None else 0) or settings.sequences
    started = study.started or time.time()
    together = getattr(executor, "mixed_tasks", False) and settings.until is None and len(pending) > 1
    named = {p["point"] for p in pending if p.get("run")}  # by an earlier pass: a resume
    if together:  # the study names its runs before they exist: a resume never loses track of one
        for p in pending:
            if not p.get("run"):
                p["run"] = new_run_id()
    written: dict[str, Any] = {}  # every field this function set in the stored record, last values
    pace = Pacer()

    def write(force: bool = False, **changes) -> None:
        now = time.monotonic()
        if force or pace.due(now):
            done, total = tally.now()
            changes.update(points=points, done=done, total=total)
            store.update_study(study.id, **changes)
            written.update(changes)
            pace.wrote(now, time.monotonic())

    # a sensitivity kept from an earlier end no longer describes the points once they run again
    write(force=True, status="running", started=started, error=None, sensitivity=None)

    def point_progress(done: int, total: int) -> None:
        tally.current_done, tally.current_total = done, total
        if progress:
            progress(*tally.now())
        write()

    if together:
        with fewer_collections():
            _together(model, study, settings, store, executor, executor_name, handle, base_params, pending, named,
                      tally, write, progress)  # fmt: skip
        pending = [p for p in pending if p["status"] not in ("succeeded", "failed")]
    for p in pending:
        run = _run_of(store, p.get("run"))
        spec = RunSpec.of({**(base_params or study.params), **p["params"]}, settings)
        if run is None:
            run = create_record(
                model,
                spec,
                executor_name,
                executor.workers,
                owner=study.owner,
                run_id=p.get("run"),
                extra=_point_spec(model, study, p),
            )
            p["run"] = run.id
            write(force=True)  # the study names the run before the run exists: a resume never loses track of it
            store.create_run(run)
        tally.total -= run.total or settings.sequences
        tally.current_done, tally.current_total = 0, run.total or settings.sequences
        p["status"] = "running"
        write(force=True)
        try:
            final = execute(model, spec, store, executor, run, point_progress, handle)
            p["status"] = final.status
            tally.done += final.done
            tally.total += final.total
        except RunCancelled:
            p["status"] = "queued" if handle.interrupted else "cancelled"
            tally.current_done = tally.current_total = 0
            status = "queued" if handle.interrupted else "cancelled"
            write(force=True, status=status, finished=None if handle.interrupted else time.time(), error="cancelled")
            raise
        except KeyboardInterrupt:
            p["status"] = "cancelled"
            write(force=True, status="cancelled", finished=time.time(), error="interrupted")
            raise
        except AnchoError as exc:  # this point failed (its run records why); the others go on
            p["status"] = "failed"
            p["error"] = str(exc)
            failed = store.get_run(run.id)
            tally.done += failed.done
            tally.total += failed.total
        tally.current_done = tally.current_total = 0
    failed_points = [p for p in points if p["status"] != "succeeded"]
    if failed_points:
        first = failed_points[0]
        error = f"{len(failed_points)} of {len(points)} points failed; point {first['point']}: {first.get('error', '')}"
        write(force=True, status="failed", finished=time.time(), error=error)
    else:
        write(force=True, status="succeeded", finished=time.time(), error=None)
    # the stored record as written, without reading back 2,000 points' JSON (6-15 ms, on one core, at the end)
    return replace(study, **{**written, "points": [{**p, "params": dict(p["params"])} for p in points]})


def _point_spec(model: LoadedModel, study: StudyRecord, p: dict) -> RecordSpec:
    """A point run's spec: its study and point, and a server's submission of the study with the point's values
    (what failure views read to hide the server's folders from tracebacks, as for a run submitted alone)."""
    submission = study.spec.submission
    if submission is not None:
        submission = replace(submission, params={**submission.params, **p["params"]})
    return RecordSpec(model.info, submission, study=study.id, point=p["point"])


#: the garbage collector's first threshold while points run together (Python's default: 700)
YOUNG_THRESHOLD = 10_000
_collections = threading.Lock()
_together_now = 0
_thresholds: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect the young generation after 10,000 new objects instead of 700 while points run together.

    Why: a 2,000-point study makes tens of thousands of small objects that live (records, summaries, the points'
    state); at Python's defaults the driver ran ~130 young collections, ~11 middle ones and a full one (~35 ms:
    every object of the process) a study, ~55 ms of its ~0.6 s of CPU, against 8–15 ms this way (measured with
    ``gc.callbacks``). Objects still die by reference counting as before; only cycles wait a little longer. The
    process-wide setting is restored when the last study running together in it ends."""
    global _together_now, _thresholds
    with _collections:
        if _together_now == 0:
            _thresholds = gc.get_threshold()
            gc.set_threshold(max(_thresholds[0], YOUNG_THRESHOLD), *_thresholds[1:])
        _together_now += 1
    try:
        yield
    finally:
        with _collections:
            _together_now -= 1
            if _together_now == 0:
                gc.set_threshold(*_thresholds)


def _together(model, study, settings, store, executor, executor_name, handle, base_params, pending, named, tally,
              write, progress) -> None:  # fmt: skip
    """The fresh points of ``pending`` (each named its run id in the study record already; ``named``: those named
    by an earlier pass) run together (:mod:`.packed`); what that leaves unfinished stays pending."""
    points, specs = [], {}
    for p in pending:
        if p["point"] in named and (_run_of(store, p["run"]) is not None or _has_chunks(store, p["run"])):
            # a run begun before (a resume): the point-by-point pass resumes its stored chunks, also those of a tiny
            # point killed after its batch's chunks were stored but before its record was (a point named now: none)
            continue

        spec = specs[p["point"]] = RunSpec.of({**(base_params or study.params), **p["params"]}, settings)
        extra = _point_spec(model, study, p)
        run = create_record(model, spec, executor_name, executor.workers, study.owner, p["run"], "running", extra)
        task = Task(model.ref, spec.params, spec.seed, run.id, block=model.info.get("block") or 1)
        results: list[ChunkResult] | None = [] if spec.sequences <= KEEP_IN_MEMORY else None
        points.append(Point(p, run, task, deque([(0, spec.sequences)]), results=results, created=False))
    if len(points) < 2:
        return

    def create(batch: list[Point]) -> None:
        now = time.time()
        for pt in batch:
            pt.run.started = now
        store.create_runs([pt.run for pt in batch])
        for pt in batch:
            pt.created = True
            pt.p["status"] = "running"

    def more(n: int) -> None:
        tally.done += n
        if progress:
            progress(*tally.now())
        write()

    handle.executor = executor
    try:
        run_packed(points, model, specs, store, executor, handle, create, more, lambda pt: write())
    except (RunCancelled, KeyboardInterrupt) as exc:
        interrupted = isinstance(exc, RunCancelled) and handle.interrupted
        status = "queued" if interrupted else "cancelled"
        for pt in points:
            if pt.p["status"] == "running":
                pt.p["status"] = status
                if pt.created:  # (a tiny point's record is written at its end: it has none yet)
                    store.update_run(pt.run.id, status=status, done=pt.done, failures=pt.failures,
                                     finished=None if interrupted else time.time(), error=None if interrupted else "cancelled")  # fmt: skip
        error = "cancelled" if isinstance(exc, RunCancelled) else "interrupted"
        write(force=True, status=status, finished=None if interrupted else time.time(), error=error)
        raise
    except AnchoError:
        pass  # an error of the whole executor call: the point-by-point pass runs what is left and names its point
    for pt in points:
        if pt.p["status"] not in ("succeeded", "failed"):
            tally.done -= pt.done  # counted again by the point-by-point pass, which resumes the stored chunks
            pt.p["status"] = "queued"


def _has_chunks(store: Store, run_id: str) -> bool:
    """Whether chunks of ``run_id`` are stored though its record is not (see ``_together``)."""
    from ..errors import NotFound

    try:
        return bool(store.completed_ranges(run_id))
    except NotFound:  # (a store that lists a run's chunks through its record)
        return False


def _run_of(store: Store, run_id: str | None):
    if not run_id:
        return None
    from ..errors import NotFound

    try:
        return store.get_run(run_id)
    except NotFound:  # created in the study record but lost before its run record was written
        return None
