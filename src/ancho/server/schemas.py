"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    upload: str | None = Field(None, description="An id returned by POST /api/v1/models.", max_length=64)
    url: str | None = Field(None, description="A .tar.gz/.zip at https://, s3:// or file://.", max_length=2048)
    git: str | None = Field(None, description="A git repository URL.", max_length=2048)
    ref: str | None = Field(None, description="With git: a tag, branch or commit.", max_length=256)
    entry: str | None = Field(
        None,
        description="path/in/source.py:Class; without it, model.py or the one file defining a model.",
        max_length=512,
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSource":
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
                    "model": {"upload": "9f2c…(64 hex digits)", "entry": "model.py:Gambler"},
                    "params": {"stake": 4},
                    "sequences": 30000,
                    "seed": 9,
                    "targets": ["rounds>=30"],
                }
            ]
        },
    )

    model: ModelSource
    params: dict[str, Any] = Field(default_factory=dict, description="Parameter values, converted by the model's annotations.")
    # Counts are strict: JSON has numbers, so "10" or true for a count is a client bug worth a 422,
    # not something to guess at.
    sequences: int | None = Field(None, ge=1, le=10**12, strict=True, description="How many sequences (with `until`: the first batch).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, strict=True, description="The run's seed; default: a fresh one, recorded.")
    targets: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100, description="Thresholds such as 'rounds>=30'.")
    until: str | None = Field(None, max_length=200, description="Precision goal such as 'mean(payoff)+-0.01'.")
    max_sequences: int | None = Field(None, ge=1, le=10**12, strict=True, description="Cap for `until` (default 1,000,000).")
    max_failures: int = Field(0, ge=0, le=10**12, strict=True, description="Sequences allowed to raise before the run fails.")
    executor: str = Field("local", max_length=256, description="'local' or a Spark master URL.")


class Progress(BaseModel):
    done: int
    total: int


class RunView(BaseModel):
    id: str
    status: Status
    progress: Progress
    model: str
    entry: str
    source: str
    source_hash: str
    params: dict[str, Any]
    seed: int
    sequences: int | None
    targets: list[str]
    until: str | None
    max_sequences: int | None
    max_failures: int
    executor: str
    failures: int
    retries: int
    error: str | None
    created: float
    started: float | None
    finished: float | None


class Created(BaseModel):
    id: str
    status: Status


class UploadView(BaseModel):
    id: str = Field(..., description="SHA-256 of the archive: the same bytes always get the same id.")
    filename: str
    size: int
    created: float


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


def run_view(record) -> dict:
    return {
        "id": record.id,
        "status": record.status,
        "progress": {"done": record.done, "total": record.total},
        "model": record.model,
        "entry": record.entry,
        "source": record.source,
        "source_hash": record.source_hash,
        "params": record.params,
        "seed": record.seed,
        "sequences": record.sequences,
        "targets": record.targets,
        "until": record.until,
        "max_sequences": record.max_sequences,
        "max_failures": record.max_failures,
        "executor": record.executor,
        "failures": record.failures,
        "retries": record.retries,
        "error": record.error,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
    }
