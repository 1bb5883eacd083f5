"""gunicorn settings, read from the working directory by `gunicorn app:app`.

Each section is one concern; keep them apart.
"""

import os
import shutil
import tempfile

# ---------------------------------------------------------------- metrics (issue 11)
# prometheus-client's multiprocess mode (its docs, "Multiprocess Mode (E.g. Gunicorn)"):
# every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR and /metrics adds
# them up. The variable must be set before a worker imports prometheus_client (here, in
# the master, before the app is loaded), and the directory emptied before the workers start.
# A directory you set yourself is emptied of its *.db files at start; one made here is
# removed when gunicorn stops.
_made_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shop-metrics-")


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
