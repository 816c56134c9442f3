#!/bin/bash
# Executor pods: Spark on Kubernetes starts them with the argument "executor" and
# passes its settings as SPARK_* environment variables (as Spark's own image
# entrypoint, kubernetes/dockerfiles/spark/entrypoint.sh, does). Anything else
# runs as a command (the driver pod runs `ancho serve` or `ancho run …`).
set -euo pipefail
if [ "${1:-}" = "executor" ]; then
  shift
  exec "$JAVA_HOME/bin/java" ${SPARK_JAVA_OPT_0:-} \
    -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
    -cp "$SPARK_HOME/jars/*:${SPARK_CONF_DIR}" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
    --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
    --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:-}" "$@"
fi
exec "$@"
