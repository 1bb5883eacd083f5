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
# removed when gunicorn stops. Which one was made here is kept in the environment, not in a
# variable of this file: gunicorn runs this file again on every HUP.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shop-metrics-")
    os.environ["SHOP_MADE_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


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
    made = os.environ.get("SHOP_MADE_METRICS_DIR")
    if made and made == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)


# ---------------------------------------------------------------- serving (issue 15)
# The shipped deployment: sync workers behind nginx on loopback (docs/deploy.md). A command
# line option (`--workers 3`) overrides any of these.
bind = "127.0.0.1:8000"
# Two sync workers per core: each waits on the database or the provider for part of a request
# (docs/decisions.md, benchmark). On 2 cores: 4 workers.
workers = max(2, 2 * (os.cpu_count() or 1))
worker_class = "sync"
# Longer than the slowest legitimate request: a provider call (5 s connect + 25 s read, see
# shop/payments) plus the 10 s order webhook, with room to spare. A worker stuck past this is
# killed and replaced.
timeout = 60
# On stop or reload, a worker finishing a checkout gets this long before it is killed.
graceful_timeout = 30
keepalive = 5
# Trust X-Forwarded-* only from nginx on this machine.
forwarded_allow_ips = "127.0.0.1,::1"
# One access line per request, with the Request-Id the store answers with (search the logs by it).
accesslog = "-"
access_log_format = (
    '%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({request-id}o)s agent="%(a)s"'
)


# ---------------------------------------------------------------- reloads (issue 15)
# `kill -HUP` / `systemctl reload` checks config.json, products.json and the environment first,
# in a child process (the master never imports the store, so new workers load new code). With
# a mistake the reload is refused and logged in one sentence, and the running workers keep
# serving; only a cold start with a broken file refuses to start (shop/config/startup.py).
def when_ready(server):
    import subprocess
    import sys

    # A marker file, made by the first worker that loads the app: from then on a worker that
    # cannot load it is one of several and must not halt the store (shop/config/startup.py).
    os.environ["SHOP_SERVING"] = os.path.join(tempfile.mkdtemp(prefix="shop-serving-"), "up")
    reload = server.handle_hup

    def handle_hup():
        done = subprocess.run(
            [sys.executable, "-m", "shop.config.files"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            sentence = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:]
            server.log.error(
                "reload refused, the running workers keep serving the files they loaded: %s",
                sentence[0] if sentence else f"the file check exited {done.returncode}",
            )
            return
        reload()

    server.handle_hup = handle_hup


def post_worker_init(worker):
    marker = os.environ.get("SHOP_SERVING")
    if marker and not os.path.exists(marker):
        with open(marker, "a"):
            pass


_metrics_on_exit = on_exit


def on_exit(server):
    _metrics_on_exit(server)
    marker = os.environ.get("SHOP_SERVING")
    if marker:
        shutil.rmtree(os.path.dirname(marker), ignore_errors=True)
# No control socket: reloads go through HUP (checked above), and its default path
# ($HOME/.gunicorn/gunicorn.ctl) would be shared by every gunicorn of the same user.
control_socket_disable = True
