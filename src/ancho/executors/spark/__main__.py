"""``python -m ancho.executors.spark``: PySpark's worker daemon (``spark.python.daemon.module``), with what every
task needs imported before it forks workers.

A task arriving just as the previous one on the same executor ends gets a
fresh worker (the previous one is not yet back in the idle pool); forked from
here it starts in milliseconds instead of importing NumPy, PyArrow and Ancho
(~1-2 s). (pandas too: pyarrow imports it on the first pa.array() when it is
installed, ~1 s per fresh worker.)
"""

if __name__ == "__main__":
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    from pyspark.daemon import manager

    import ancho.chunk  # noqa: F401
    import ancho.executors.spark.tasks  # noqa: F401

    manager()
