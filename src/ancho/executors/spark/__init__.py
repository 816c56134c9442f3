"""The Spark executor: chunks run as Spark tasks on a cluster (standalone, Kubernetes, YARN, ``local[N]``).

One module per job, so each can be read (and changed) alone:

* :mod:`.session` — the process's one SparkSession, its warm-up, the model
  folders shipped to it as archives;
* :mod:`.options` — :class:`SparkOptions`, how an executor is set up;
* :mod:`.driver` — :class:`SparkExecutor`, the driver loop that turns the
  engine's chunks into Spark jobs, and where results are written and
  summarised;
* :mod:`.tasks` — what runs on the executors: a task's chunks, and the
  prepared models and Cassandra writers a reused Python worker keeps;
* :mod:`.codec` — the wire format of a task's results and errors;
* :mod:`.cost` — the cost model that sizes tasks;
* :mod:`.summary` — the run's summary computed by Spark SQL.

The names below are the package's public ones (``from ancho.executors.spark
import SparkExecutor, spark_session, stop_session``).
"""

from __future__ import annotations

from .codec import decode, encode, encode_error, encode_stored
from .cost import MIN_SAMPLE_SECONDS, TASK_SECONDS, TASKS_PER_CORE, tasks_chunks
from .driver import SPARK_SUMMARY_MIN, SparkExecutor
from .options import SparkOptions
from .session import WAIT_EXECUTORS, spark_session, stop_session
from .tasks import KEEP, PROBE_PATIENCE

__all__ = [
    "SparkExecutor",
    "SparkOptions",
    "spark_session",
    "stop_session",
    "tasks_chunks",
    "encode",
    "encode_stored",
    "encode_error",
    "decode",
    "TASKS_PER_CORE",
    "TASK_SECONDS",
    "MIN_SAMPLE_SECONDS",
    "SPARK_SUMMARY_MIN",
    "WAIT_EXECUTORS",
    "PROBE_PATIENCE",
    "KEEP",
]
