"""Spark configuration per deployment profile, in one place.

``local``: ``local[*]`` on this machine, Arrow batches between the JVM and Python, reused
Python workers (so a worker keeps the models it loaded), the UI on or off by setting; the
workers run this interpreter (:func:`use_this_python_for_workers`).

``cluster``: the master URL and the GPU resource settings come from the settings (and so
from the environment or config.yaml): ``spark.executor.resource.gpu.amount``,
``spark.task.resource.gpu.amount`` and the executors' GPU discovery script.

``spark_conf`` in config.yaml is applied last and wins.
"""

from __future__ import annotations

import os
import sys

from llm_eval_pipeline.settings import Settings

ARROW_BATCH_ROWS = 2_048


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark configuration for ``settings.profile``."""
    conf: dict[str, str] = {
        "spark.app.name": "llm_eval_pipeline",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.python.worker.reuse": "true",
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
    }
    if settings.profile == "local":
        conf.update(
            {
                "spark.master": "local[*]",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.host": "127.0.0.1",
                "spark.driver.memory": "4g",
                "spark.sql.shuffle.partitions": "4",
                "spark.local.dir": str(settings.spark_local_dir),
                "spark.sql.warehouse.dir": str(settings.spark_local_dir / "warehouse"),
            }
        )
    else:
        if settings.spark_master:
            conf["spark.master"] = settings.spark_master
        if settings.executor_gpus is not None:
            conf["spark.executor.resource.gpu.amount"] = _number(settings.executor_gpus)
        if settings.task_gpus is not None:
            conf["spark.task.resource.gpu.amount"] = _number(settings.task_gpus)
        if settings.gpu_discovery_script:
            conf["spark.executor.resource.gpu.discoveryScript"] = settings.gpu_discovery_script
    if settings.delta_engine == "spark":
        conf.setdefault("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        conf.setdefault(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    conf.update(settings.spark_conf)
    return conf


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def use_this_python_for_workers(settings: Settings) -> None:
    """On the local profile, make Spark's Python workers run this interpreter (and so this
    virtualenv). PySpark reads the choice from ``PYSPARK_PYTHON`` when the SparkContext
    starts, not from the Spark conf; a value already set is kept."""
    if settings.profile == "local":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
