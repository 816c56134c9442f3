"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..present import client_traceback
from ..streams import MAX_SEED

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Error(BaseModel):
    detail: Any = Field(..., description="What is wrong, naming the input at fault.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class ModelSource(BaseModel):
    """Where the model's code comes from: exactly one of ``upload``, ``url`` or ``git``."""

    model_config = ConfigDict(extra="forbid")

    upload: str | None = Field(None, min_length=1, description="An id returned by POST /api/v1/models.", max_length=64)
    url: str | None = Field(
        None, min_length=1, description="A .tar.gz/.zip at https://, s3:// or file://.", max_length=2048
    )
    git: str | None = Field(None, min_length=1, description="A git repository URL.", max_length=2048)
    ref: str | None = Field(None, min_length=1, description="With git: a tag, branch or commit.", max_length=256)
    entry: str | None = Field(
        None,
        min_length=1,
        description="path/in/source.py:Class; without it, model.py or the one file defining a model.",
        max_length=512,
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [k for k in ("upload", "url", "git") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of upload, url or git")
        if self.ref and not self.git:
            raise ValueError("ref goes with git")
        return self


class RunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": {
                        "upload": "3eed222ad894ea5655a0922100b885c27ffd9d8ebca413041617e2db9fb44781",
                        "entry": "model.py:Gambler",
                    },
                    "params": {"stake": 4},
                    "sequences": 30000,
                    "seed": 9,
                    "targets": ["rounds>=30"],
                }
            ]
        },
    )

    model: ModelSource
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameter values, converted by the model's annotations."
    )
    # Counts are strict: JSON has numbers, so "10" or true for a count is a client bug worth a 422,
    # not something to guess at.
    sequences: int | None = Field(
        None, ge=1, le=10**12, strict=True, description="How many sequences (with `until`: the first batch)."
    )
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, strict=True, description="The run's seed; default: a fresh one, recorded."
    )
    targets: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100, description="Thresholds such as 'rounds>=30'."
    )
    until: str | None = Field(None, max_length=200, description="Precision goal such as 'mean(payoff)+-0.01'.")
    max_sequences: int | None = Field(
        None, ge=1, le=10**12, strict=True, description="Cap for `until` (default 1,000,000)."
    )
    max_failures: int = Field(
        0, ge=0, le=10**12, strict=True, description="Sequences allowed to raise before the run fails."
    )
    executor: str = Field("local", max_length=256, description="'local' or a Spark master URL.")


class Progress(BaseModel):
    done: int
    total: int


class RecordView(BaseModel):
    """What a run's and a study's views share: the request's settings, the status, progress and times."""

    id: str
    status: Status
    progress: Progress
    model: str
    entry: str
    source: str
    params: dict[str, Any]
    seed: int
    sequences: int | None
    targets: list[str]
    until: str | None
    max_sequences: int | None
    max_failures: int
    executor: str
    error: str | None
    created: float
    started: float | None
    finished: float | None


#: RecordView's fields read as they are from a RunRecord or StudyRecord (id, status and progress are built)
_SHARED = tuple(name for name in RecordView.model_fields if name not in ("id", "status", "progress"))


def _record_view(record) -> dict:
    view = {"id": record.id, "status": record.status, "progress": {"done": record.done, "total": record.total}}
    view.update((name, getattr(record, name)) for name in _SHARED)
    return view


class RunView(RecordView):
    source_hash: str
    failures: int
    retries: int
    block: int | None = Field(
        None,
        description="A batch model's block: the sequences each sequences() call computed, which its results depend "
        "on (docs/reproducibility.md); null for a model that runs one sequence at a time.",
    )


class Created(BaseModel):
    id: str
    status: Status


class UploadView(BaseModel):
    id: str = Field(..., description="SHA-256 of the archive: the same bytes always get the same id.")
    filename: str
    size: int
    created: float


class OutputSummary(BaseModel):
    """Statistics of one output (booleans count as 0/1; their ci95 is a Wilson interval)."""

    count: int
    mean: float | None
    std: float | None
    sem: float | None
    ci95: list[float] | None = Field(..., min_length=2, max_length=2)
    min: float | None
    p5: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p95: float | None
    max: float | None


class TargetSummary(BaseModel):
    expr: str
    probability: float | None
    ci95: list[float] | None = Field(..., min_length=2, max_length=2)


class Summary(BaseModel):
    """The summary object: the same as `ancho run --json` and `Results.summary`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": "3f9c2a1b7d4e",
                    "status": "succeeded",
                    "sequences": 20000,
                    "seed": 3,
                    "params": {"stake": 3, "goal": 10, "p": 0.45},
                    "outputs": {
                        "rounds": {
                            "count": 20000,
                            "mean": 17.2,
                            "std": 14.1,
                            "sem": 0.1,
                            "ci95": [17.0, 17.4],
                            "min": 3,
                            "p5": 3,
                            "p25": 7,
                            "p50": 13,
                            "p75": 23,
                            "p95": 45,
                            "max": 150,
                        }
                    },
                    "targets": [{"expr": "rounds>=30", "probability": 0.17, "ci95": [0.16, 0.18]}],
                    "custom": {"median_rounds_when_won": 12.0},
                    "failures": 0,
                }
            ]
        }
    )

    run: str
    status: Status
    sequences: int
    seed: int
    params: dict[str, Any]
    outputs: dict[str, OutputSummary]
    targets: list[TargetSummary]
    custom: dict[str, Any]
    failures: int
    until: dict[str, Any] | None = Field(
        None, description="With a precision goal: its expression, half-width reached, goal and whether it was met."
    )


class FailureView(BaseModel):
    sequence: int
    error: str
    traceback: str


class ResultsPage(BaseModel):
    run: str
    total: int
    offset: int
    limit: int
    next: int | None = Field(None, description="The offset of the next page, or null at the end.")
    results: list[dict[str, Any]]


class InspectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelSource
    params: dict[str, Any] | None = None


class ParameterView(BaseModel):
    name: str
    type: str
    default: Any = None
    required: bool


class ModelView(BaseModel):
    name: str
    doc: str
    entry: str
    parameters: list[ParameterView]
    summaries: list[str]
    kind: Literal["sequence", "batch"] = Field(
        "sequence", description="batch: the model defines sequences(rng, n) and computes a block at a time"
    )
    block: int | None = Field(None, description="A batch model's block (sequences a call); null otherwise.")


def run_view(record) -> dict:
    """A run as :class:`RunView` describes it."""
    view = _record_view(record)
    view.update(source_hash=record.source_hash, failures=record.failures, retries=record.retries, block=record.block)
    return view


def failure_views(record, failures) -> list[dict]:
    """A run's failures as the API and the site show them: tracebacks with paths relative to the model's source.

    The server's folders are no business of the client's.
    """
    root = record.spec.submission.root if record.spec.submission else None
    out = []
    for f in failures:
        item = f.to_dict()
        item["traceback"] = client_traceback(item["traceback"], root)
        out.append(item)
    return out


# -- studies ----------------------------------------------------------------------------------------------------------
#: a parameter's range in a sampled design: [low, high] for a number, or {"choices": [...]} (docs/studies.md)
RangeBody = Annotated[Any, Field(description='[low, high] (ints inclusive) or {"choices": [...]}')]
_Count = Annotated[int, Field(ge=1, strict=True)]
_DesignSeed = Annotated[int | None, Field(None, ge=0, le=MAX_SEED, strict=True, description="Default: the study's.")]


class SampledDesign(BaseModel):
    """``random``, ``lhs``: ``n`` points sampled over ``ranges``."""

    model_config = ConfigDict(extra="forbid")
    n: _Count
    ranges: dict[str, RangeBody]
    seed: _DesignSeed = None


class SobolDesign(SampledDesign):
    """Saltelli's sampling: ``n`` (a power of two) × (d + 2) points, or × (2d + 2) with ``calc_second_order``."""

    calc_second_order: bool = False


class MorrisDesign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trajectories: _Count
    levels: _Count = 4
    ranges: dict[str, RangeBody]
    seed: _DesignSeed = None


class DesignBody(BaseModel):
    """Exactly one design kind (docs/studies.md). Read into an :class:`ancho.studies.Design`, whose checks apply."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"grid": {"p": [0.45, 0.5]}}, {"lhs": {"n": 64, "ranges": {"p": [0.4, 0.6]}}}]},
    )
    grid: dict[str, list[Any]] | None = Field(None, description="Every combination of each parameter's values.")
    random: SampledDesign | None = None
    lhs: SampledDesign | None = None
    sobol: SobolDesign | None = None
    morris: MorrisDesign | None = None
    points: list[dict[str, Any]] | None = Field(None, description="The points themselves, one object each.")

    @model_validator(mode="after")
    def _one_kind(self) -> DesignBody:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one design kind of {', '.join(type(self).model_fields)}; got {given or 'none'}"
            )
        from ..errors import FieldError

        try:
            self.plan()
        except FieldError as exc:  # the design's own rules (empty, low >= high, Sobol n…), named on this field
            raise ValueError(str(exc)) from None
        return self

    def plan(self):
        """The :class:`ancho.studies.Design` this body describes (not yet seeded)."""
        from ..studies import Design

        return Design.from_dict(self.model_dump(exclude_none=True))


class StudyRequest(RunRequest):
    """A run's body plus ``design``: every point is a run with these settings and the point's values over ``params``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": {"upload": "3eed222ad894ea5655a0922100b885c27ffd9d8ebca413041617e2db9fb44781"},
                    "design": {"grid": {"p": [0.45, 0.5]}},
                    "params": {"stake": 3},
                    "sequences": 20000,
                    "seed": 7,
                }
            ]
        },
    )
    design: DesignBody


class StudyView(RecordView):
    progress: Progress = Field(..., description="Sequences done and planned over every point.")
    points: int
    points_finished: int = Field(..., description="Points whose run has ended (succeeded, failed or cancelled).")
    design: dict[str, Any]


class PointSummary(BaseModel):
    point: int
    run: str | None
    params: dict[str, Any]
    status: Status
    sequences: int
    outputs: dict[str, OutputSummary]
    targets: list[TargetSummary]
    custom: dict[str, Any]
    failures: int


class StudySummary(BaseModel):
    """The study summary object: the same as `ancho study --json` and `Study.summary`."""

    study: str
    status: Status
    model: str
    seed: int
    sequences: int | None
    design: dict[str, Any]
    params: dict[str, Any]
    points: list[PointSummary]


class OutputComparison(BaseModel):
    mean_a: float | None
    mean_b: float | None
    difference: float | None
    ci95: list[float | None] | None
    variance_reduction: float | None = None
    model_config = ConfigDict(extra="allow")


class TargetComparison(BaseModel):
    expr: str
    probability_a: float | None
    probability_b: float | None
    difference: float | None
    ci95: list[float | None] | None
    model_config = ConfigDict(extra="allow")


class Comparison(BaseModel):
    """Run b against run a (``difference`` is b − a), paired on common random numbers when the seeds match."""

    model_config = ConfigDict(extra="allow")
    a: str
    b: str
    paired: bool
    sequences: int
    outputs: dict[str, OutputComparison]
    targets: list[TargetComparison]


_FINISHED = ("succeeded", "failed", "cancelled")


def study_view(record) -> dict:
    """A study as :class:`StudyView` describes it."""
    view = _record_view(record)
    finished = sum(p.get("status") in _FINISHED for p in record.points)
    view.update(points=len(record.points), points_finished=finished, design=record.design)
    return view
