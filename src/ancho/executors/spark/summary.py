"""A run's summary computed by Spark: the same object as :func:`ancho.stats.build_summary`, from Spark SQL.

(Formerly ``ancho.executors.spark_summary``, which still imports as this module.)

Why: a large run's results need not pass through the driver. One Spark SQL
job computes, for every output at once, the moments and extremes
(``count``, ``avg``, ``stddev_samp``, ``min``, ``max``), the percentiles and
the target hits; the driver turns them into the summary with the function a local run
ends in (:func:`ancho.stats.describe_moments`), so the definitions cannot
drift apart:

* NaN values are left out of every statistic and of ``count`` (Spark orders
  NaN above every number and counts it, so each aggregate is filtered);
* bool outputs are 0/1: their mean is ``hits / count``, their standard
  deviation is computed from it as locally, their interval is Wilson's;
* ``count``, ``min``, ``max``, bool means and target probabilities are
  integer arithmetic or exact, so they equal the local ones bit for bit;
  ``mean`` and ``std`` are sums in another order (Spark adds partition by
  partition, NumPy pairwise): equal to ~1e-15 relative;
* percentiles are exact (Spark's ``percentile``: linear interpolation
  between closest ranks, NumPy's default definition) up to
  ``EXACT_PERCENTILES`` values per output; above that, ``percentile_approx``
  with ``APPROX_ACCURACY``: the rank of the value returned is within
  ``count / APPROX_ACCURACY`` of the exact rank (Spark's documented relative
  error ``1 / accuracy``), and the value is one of the output's own values
  (no interpolation).

User ``@ancho.summary`` functions run in one Spark task through a pandas
UDF (``applyInPandas`` over the whole results as one group): they get the
same DataFrame as locally (``sequence`` first, the run's dtypes, sequence
order), and the whole run must fit in one executor's Python worker memory.

Spark reads the results from where the store wrote them, as its typed
results source says (:mod:`ancho.stores.results_sources`): the embedded
store's Parquet files (:class:`ChunkFiles`, one file per chunk, on the
driver's disk) only when every executor sees that folder at the same path (a
cluster on this machine, or shared storage); the Cassandra store's chunks
(:class:`CassandraResults`) from any executor that reaches the Cassandra
nodes, with the run owner's role. Otherwise the executor falls back to the
driver's summary.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ...expressions import Target
from ...stats import PERCENTILES, build_summary, clean, describe_moments, wilson
from ...stores.results_sources import CassandraResults, ChunkFiles, ResultsSource

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

#: up to this many values per output, percentiles are exact; above, approximate
EXACT_PERCENTILES = 100_000
#: percentile_approx's accuracy: the returned value's rank is within count/APPROX_ACCURACY of the exact rank
APPROX_ACCURACY = 100_000
_SPARK_TYPES = {"bool": "boolean", "int": "bigint", "float": "double"}
_SQL_OPS = {">=": ">=", "<=": "<=", ">": ">", "<": "<", "==": "=", "!=": "!="}


#: a chunk file's stored columns: (name, Arrow type) pairs
Types = tuple[tuple[str, str], ...]


def chunk_groups(source: ChunkFiles) -> dict[Types, list[str]]:
    """The run's non-empty chunk files grouped by their stored column types (a column may be int in early chunks,
    float later; Spark's Parquet reader does not widen types, so each group is read with its own schema)."""
    import pyarrow.parquet as pq

    groups: dict[Types, list[str]] = {}
    for path in source.paths:
        meta = pq.read_metadata(path)
        if meta.num_rows == 0:
            continue
        types = tuple((f.name, str(f.type)) for f in meta.schema.to_arrow_schema())
        groups.setdefault(types, []).append(str(path))
    return groups


def results_frame(
    spark: SparkSession, source: ResultsSource | dict[str, Any], kinds: dict[str, str]
) -> DataFrame | None:
    """The run's results as a Spark DataFrame cast to the run's schema (``sequence`` then outputs), or None
    when they are not in a form Spark reads (the embedded store's chunk files, or Cassandra) or the run is empty.

    ``source``: a typed results source (or its dict form)."""
    from ...stores.results_sources import results_source

    if any(kind.endswith("]") for kind in kinds.values()):
        # a run with trajectory outputs is summarised by the driver (ancho.trajectories: streamed step blocks),
        # the same object as locally; Spark SQL summaries cover scalar outputs only
        return None
    source = results_source(source)
    if isinstance(source, CassandraResults):
        return _cassandra_frame(spark, source, kinds)
    if not isinstance(source, ChunkFiles) or not source.files:
        return None
    from pyspark.sql import functions as F

    columns = [F.col("sequence").cast("bigint").alias("sequence")]
    columns += [F.col(f"`{name}`").cast(_SPARK_TYPES[kind]).alias(name) for name, kind in kinds.items()]
    frame: DataFrame | None = None
    for types, files in chunk_groups(source).items():
        ddl = ", ".join(f"`{name}` {_arrow_to_spark(t)}" for name, t in types)
        part = spark.read.schema(ddl).parquet(*files)
        if "sequence" not in part.columns:  # files with a row for every sequence of their range (chunk_layout)
            first = F.regexp_extract(F.col("_metadata.file_name"), r"^(\d+)-", 1).cast("bigint")
            part = part.withColumn("sequence", first + F.col("_metadata.row_index"))
        for name in kinds:
            if name not in part.columns:  # defensive: a chunk written before the schema grew
                part = part.withColumn(name, F.lit(None))
        part = part.select(*columns)
        frame = part if frame is None else frame.unionByName(part)
    return frame


def _cassandra_frame(spark: SparkSession, source: CassandraResults, kinds: dict[str, str]) -> DataFrame | None:
    """Tasks read the run's chunks from Cassandra themselves, with the owner's role (the results source carries
    it), through the store's own reader (``ancho.stores.cassandra_results.read_chunks``) in a ``mapInArrow`` job."""
    from ...stores.cassandra_results import chunk_starts

    starts = chunk_starts(source)
    if not starts:
        return None
    ddl = ", ".join(["`sequence` bigint", *(f"`{name}` {_SPARK_TYPES[kind]}" for name, kind in kinds.items())])
    parts = max(1, min(len(starts), 4 * spark.sparkContext.defaultParallelism))
    chunks = spark.createDataFrame([(start,) for start in starts], "start long").repartition(parts)
    frame: DataFrame = chunks.mapInArrow(functools.partial(_read_cassandra, source), ddl)
    return frame


def _read_cassandra(source: CassandraResults, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    from ...stores.cassandra_results import read_chunks

    for batch in batches:
        yield from read_chunks(source, batch.column(0).to_pylist())


def _arrow_to_spark(arrow_type: str) -> str:
    return {"bool": "boolean", "int64": "bigint", "double": "double", "int32": "int", "float": "float"}.get(
        arrow_type, "double"
    )


def summarize(
    frame: DataFrame,
    record: dict[str, Any],
    kinds: dict[str, str],
    targets: list[Target],
    custom: dict[str, Any] | None,
    goal: dict[str, Any] | None,
) -> dict[str, Any]:
    """The summary object (see the module's docstring) from one Spark SQL job over ``frame``."""
    from pyspark.sql import functions as F

    aggs: list[Column] = []
    slots: dict[str, dict[str, int]] = {}

    def add(name: str, key: str, expr: Column) -> None:
        slots.setdefault(name, {})[key] = len(aggs)
        aggs.append(expr)

    for name, kind in kinds.items():
        col = F.col(f"`{name}`")
        valid = F.when(~F.isnan(col), col) if kind == "float" else col.cast("int") if kind == "bool" else col
        add(name, "count", F.count(valid))
        add(name, "min", F.min(valid))
        add(name, "max", F.max(valid))
        if kind == "bool":
            add(name, "hits", F.sum(valid))
        else:
            add(name, "mean", F.avg(valid.cast("double")))
            add(name, "std", F.stddev_samp(valid.cast("double")))
        add(name, "exact", F.percentile(valid, [q / 100 for q in PERCENTILES]))
        add(name, "approx", F.percentile_approx(valid, [q / 100 for q in PERCENTILES], APPROX_ACCURACY))
    for t in targets:
        if t.output not in kinds:
            continue
        col = F.col(f"`{t.output}`")
        if kinds[t.output] == "bool":
            col = col.cast("double")
        valid = ~F.isnan(col) if kinds[t.output] == "float" else F.lit(True)
        meets = (
            F.expr(f"`{t.output}` {_SQL_OPS[t.op]} {float(t.value)!r}")
            if kinds[t.output] != "bool"
            else F.expr(f"cast(`{t.output}` as double) {_SQL_OPS[t.op]} {float(t.value)!r}")
        )
        add(t.expr, "hits", F.sum(F.when(valid & meets, 1).otherwise(0)))
        add(t.expr, "n", F.sum(F.when(valid, 1).otherwise(0)))
    # exact percentiles hold every distinct value in memory: only for runs small enough (stored rows ≤ sequences done)
    exact = int(record.get("done") or 0) <= EXACT_PERCENTILES
    keep = [
        i for i, _ in enumerate(aggs) if not any(s.get("approx" if exact else "exact") == i for s in slots.values())
    ]
    row = frame.agg(*[aggs[i] for i in keep]).first()
    if row is None:  # pragma: no cover - an aggregate without grouping always has its one row
        raise RuntimeError("Spark returned no row for the summary's aggregates")
    value = {i: row[k] for k, i in enumerate(keep)}

    outputs = {}
    for name, kind in kinds.items():
        s = slots[name]
        pct = value[s["exact" if exact else "approx"]]
        outputs[name] = describe_moments(
            kind,
            int(value[s["count"]]),
            value[s["min"]],
            value[s["max"]],
            hits=value.get(s.get("hits", -1)),
            mean=value.get(s.get("mean", -1)),
            std=value.get(s.get("std", -1)),
            percentiles=pct,
        )
    rows = []
    for t in targets:
        got = slots.get(t.expr)
        hits, n = (int(value[got["hits"]] or 0), int(value[got["n"]] or 0)) if got else (0, 0)
        ci = wilson(hits, n)
        rows.append({"expr": t.expr, "probability": hits / n if n else None, "ci95": list(ci) if ci else None})
    summary = build_summary(record, {}, _no_column, [], custom, goal)
    summary["outputs"] = clean(outputs)
    summary["targets"] = clean(rows)
    return summary


def _no_column(name: str) -> NoReturn:  # pragma: no cover - build_summary is given no outputs to read
    raise AssertionError(name)


# -- user summary functions ---------------------------------------------------------------------------------------


def custom_summaries(
    frame: DataFrame, kinds: dict[str, str], names: tuple[str, ...], resolve: Callable[[], Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Each named ``@ancho.summary`` function of the model, run in one Spark task over the whole results.

    ``resolve()`` (called in the task) returns the model class. A function that raises gets
    ``{"error": …}`` as its value, as locally; a model that cannot be loaded raises on the driver.
    """
    from pyspark.sql import functions as F

    columns = ["sequence", *kinds]
    names, kinds = tuple(names), dict(kinds)

    def run(results: Any) -> Any:  # (a function, not a partial: pyspark reads its signature for type hints)
        return _run_custom(resolve, params, names, columns, kinds, results)

    out = frame.groupBy(F.lit(0).alias("_all")).applyInPandas(run, "name string, value string").collect()
    values = {row["name"]: json.loads(row["value"]) for row in out}
    if "\0error" in values:
        from ...errors import ModelError

        raise ModelError(values["\0error"])
    return {name: values.get(name) for name in names}


def _run_custom(
    resolve: Callable[[], Any],
    params: dict[str, Any],
    names: tuple[str, ...],
    columns: list[str],
    kinds: dict[str, str],
    frame: pd.DataFrame,
) -> pd.DataFrame:
    """In the Spark task: the DataFrame exactly as a local worker reads it, then each summary function."""
    import pandas as pd

    from ...chunk import KIND_DTYPES

    frame = frame.sort_values("sequence", kind="stable").reset_index(drop=True)[columns]
    frame = frame.astype({"sequence": "int64", **{n: KIND_DTYPES[k] for n, k in kinds.items()}})
    try:
        instance = resolve()(**params)
    except Exception as exc:  # noqa: BLE001 - reported on the driver as one line
        return pd.DataFrame(
            {"name": ["\0error"], "value": [json.dumps(f"model setup failed in a worker: {type(exc).__name__}: {exc}")]}
        )
    from ...custom import apply_summaries

    out = apply_summaries(instance, frame, names)
    return pd.DataFrame({"name": list(out), "value": [json.dumps(v, allow_nan=False) for v in out.values()]})
