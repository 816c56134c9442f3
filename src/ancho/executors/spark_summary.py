"""Former home of the Spark summary: now :mod:`ancho.executors.spark.summary`, which this name imports as.

The module itself is put in this name's place (not a copy of its names), so
``from ancho.executors import spark_summary`` and setting its constants
(``spark_summary.EXACT_PERCENTILES = …``) reach the one module that uses them.
"""

import sys

from .spark import summary as _summary

sys.modules[__name__] = _summary
