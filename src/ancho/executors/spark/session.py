"""The process's one SparkSession: creating it, warming its executors up, the model archives shipped to it.

Why one object: Spark allows one SparkContext per process, and what hangs
off it — whether its executors' Python workers were warmed up, which model
folders were zipped and added to it, the temporary folders holding those
zips — lives exactly as long as that context. :class:`Session` holds them
together, so stopping the session forgets all of it at once, and nothing
here outlives or outgrows the session it belongs to.

The shipped archives are bounded by the session, not by a count: Spark keeps
every archive added to a context for its whole life and sends each to every
executor that registers later (a replaced one too), so neither the name nor
the zip it is read from can go before the session does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import InputError
from ...loading import FileRef, hash_source
from ...tree import source_files

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    from ...loading import ModelRef

#: seconds to wait, when a session starts, for a first executor to register (to read the cluster's cores)
WAIT_EXECUTORS = 30.0
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_LOOPBACK = ("spark://127.", "spark://localhost", "local")  # masters whose executors run on this machine


def on_this_machine(master: str) -> bool:
    """Whether ``master``'s executors run on this machine (so they see the driver's folders at the same paths)."""
    return master.startswith(_LOOPBACK)


class Session:
    """The process's SparkSession and what belongs to it: its warm-up, its shipped model archives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spark: SparkSession | None = None
        self._warmed: str | None = None  # the application id whose executors were warmed up
        self._shipped: dict[str, str] = {}  # model folder's source hash -> archive name, for this session only
        self._temp_dirs: list[str] = []  # the zips' folders: Spark serves them from there until the session stops

    def get(self, master: str, conf: dict[str, str] | None = None) -> SparkSession:
        """The SparkSession for ``master``, created on first use and reused by every run."""
        with self.lock:
            if self.spark is not None:
                sc = self.spark.sparkContext
                if sc._jsc is not None and sc.master == master:
                    return self.spark
                if sc._jsc is not None:
                    raise InputError(
                        f"this process already runs on the Spark master {sc.master}; one process uses one master, so start another process for {master}"
                    )
                self._forget()  # (stopped behind our back: what belonged to it is gone with it)
            if on_this_machine(master):
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a cluster on this machine: stay on loopback
            os.environ["PYSPARK_PYTHON"] = sys.executable
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.master(master).appName("ancho")
            settings = {
                "spark.python.worker.reuse": "true",
                "spark.task.maxFailures": "8",
                "spark.pyspark.python": sys.executable,
                "spark.ui.showConsoleProgress": "false",
                "spark.scheduler.mode": "FIFO",
                # executors fork their Python workers from this package's __main__: NumPy, PyArrow and the task code
                # imported once
                "spark.python.daemon.module": "ancho.executors.spark",
            }
            for var in _THREAD_VARS:  # one BLAS thread per task, as the local executor does
                settings[f"spark.executorEnv.{var}"] = os.environ.get(var, "1")
            settings.update(conf or {})
            for k, v in settings.items():
                builder = builder.config(k, v)
            spark: SparkSession = builder.getOrCreate()
            spark.sparkContext.setLogLevel("ERROR")
            self.spark = spark
            return spark

    def stop(self) -> None:
        """Stop the SparkSession (at exit, or to switch masters) and remove what was shipped to it."""
        with self.lock:
            if self.spark is not None:
                try:
                    self.spark.stop()
                finally:
                    self.spark = None
                    self._forget()

    def _forget(self) -> None:
        self._warmed = None
        self._shipped.clear()
        while self._temp_dirs:
            shutil.rmtree(self._temp_dirs.pop(), ignore_errors=True)

    def warm_up(self, sc: SparkContext) -> None:
        """Once per session: start the executors' Python workers and import what a task needs.

        This moves a fixed cost (a few seconds: Python start-up, NumPy, PyArrow)
        from the first run into the session start-up, which ``ancho.run`` overlaps
        with loading the model.
        """
        with self.lock:
            if self._warmed == sc.applicationId:
                return
            self._warmed = sc.applicationId
        from .tasks import import_task_modules

        n = max(1, sc.defaultParallelism)
        sc.parallelize(range(n), n).foreachPartition(import_task_modules)

    def ship(self, sc: SparkContext, ref: ModelRef) -> str | None:
        """A :class:`FileRef`'s folder zipped and added to the session as an archive (once per session and source);
        its name, for tasks to find it unpacked with ``SparkFiles.get``. None for a model that is not a folder."""
        if not isinstance(ref, FileRef):
            return None
        root = Path(ref.root)
        digest = hash_source(root)[:16]
        with self.lock:  # per session, not per executor object: Spark refuses a name added twice
            name = self._shipped.get(digest)
            if name is None:
                name = self._shipped[digest] = self._zip_and_add(sc, root, digest)
        return name

    def _zip_and_add(self, sc: SparkContext, root: Path, digest: str) -> str:
        name = f"ancho-src-{digest}.zip"
        folder = tempfile.mkdtemp(prefix="ancho-spark-")
        self._temp_dirs.append(folder)  # Spark reads it when an executor first needs it: removed with the session
        path = Path(folder) / name
        # strict_timestamps=False: uploaded sources unpack with fixed (1970) times, which zip cannot hold (stored as 1980)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
            for rel, full in source_files(root):
                zf.write(full, rel)
        sc.addArchive(str(path))
        return name


#: the process's one session (Spark allows one SparkContext per process)
SESSION = Session()


def spark_session(master: str, conf: dict[str, str] | None = None) -> SparkSession:
    """The process's SparkSession for ``master``, created on first use and reused by every run."""
    return SESSION.get(master, conf)


def stop_session() -> None:
    """Stop the process's SparkSession (at exit, or to switch masters)."""
    SESSION.stop()


atexit.register(stop_session)
