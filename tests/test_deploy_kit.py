"""The deployment kit, run for real: the shipped nginx site in front of gunicorn with the shipped
gunicorn.conf.py on loopback, the same gunicorn without nginx, and the systemd unit."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.gunicorn_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "shop.conf"
UNIT = ROOT / "deploy" / "shop.service"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
# .ci/run installs Debian's nginx when it is missing; a machine without apt has no way to get it.
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it)"
)
HOST = "shop.example.com"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A self-signed certificate for shop.example.com and 127.0.0.1 (certbot's stand-in)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={HOST}",
            "-addext",
            f"subjectAltName=DNS:{HOST},IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return {"cert": cert, "key": key}


def _site(tls: dict[str, Path], **ports: int) -> str:
    """The shipped site with the certificate (and, to run it, the ports) of this machine."""
    text = SITE.read_text()
    text = text.replace(f"/etc/letsencrypt/live/{HOST}/fullchain.pem", str(tls["cert"]))
    text = text.replace(f"/etc/letsencrypt/live/{HOST}/privkey.pem", str(tls["key"]))
    if ports:
        text = text.replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
        text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports['https']} ssl;")
        text = re.sub(r"\n\s*listen \[::\]:\d+( ssl)?;", "", text)
        text = text.replace("127.0.0.1:8000", f"127.0.0.1:{ports['app']}")
        # The test waits 1 s for a body, not the shipped 10 s; the behaviour is the same.
        text = text.replace("client_body_timeout 10s;", "client_body_timeout 1s;")
    return text


def _nginx_conf(folder: Path, site: str) -> Path:
    """A main nginx.conf around the site, everything in `folder` (Debian's wraps it the same)."""
    (folder / "shop.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 256; }}\n"
        "http {\n"
        f"  access_log {folder}/access.log;\n"
        f"  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
        f"  fastcgi_temp_path {folder}/fastcgi;\n  uwsgi_temp_path {folder}/uwsgi;\n"
        f"  scgi_temp_path {folder}/scgi;\n"
        f"  include {folder}/shop.conf;\n"
        "}\n"
    )
    return conf


@needs_nginx
def test_nginx_accepts_the_shipped_site(tls, tmp_path):
    # Only the certificate paths differ from the file merchants copy.
    conf = _nginx_conf(tmp_path, _site(tls))
    done = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "[warn]" not in done.stderr


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine (no systemd to check the unit with)")
    unit = tmp_path / "shop.service"
    text = UNIT.read_text().replace(
        "/opt/shop/.venv/bin/gunicorn", str(Path(sys.executable).with_name("gunicorn"))
    )
    unit.write_text(text.replace("/opt/shop", str(ROOT)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines() if "shop.service" in line
    ]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
    assert "EnvironmentFile=/etc/shop/env" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text


def _gunicorn(shop_files, log: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")} | {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_BODY_TIMEOUT": "1",
    }
    with log.open("wb") as out:
        # No --config: the shipped ./gunicorn.conf.py, as systemd runs it; only bind and the
        # worker count differ (a free port; 2 workers on a shared test machine).
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "app:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(url: str, log: Path, **kwargs) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=2, **kwargs)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tls, tmp_path_factory) -> Iterator[dict[str, object]]:
    """gunicorn (shipped config) on one port, the shipped nginx site in front of it."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    tmp_path = tmp_path_factory.mktemp("stack")
    shop_files = {
        "config": tmp_path / "config.json",
        "products": tmp_path / "products.json",
        "db": tmp_path / "shop.sqlite3",
    }
    shutil.copy(ROOT / "tests" / "data" / "config.json", shop_files["config"])
    shutil.copy(ROOT / "tests" / "data" / "products.json", shop_files["products"])
    ports = {"app": free_port(), "http": free_port(), "https": free_port()}
    app_log = tmp_path / "gunicorn.log"
    app = _gunicorn(shop_files, app_log, ports["app"])
    conf = _nginx_conf(tmp_path, _site(tls, **ports))
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{ports['app']}/healthz", app_log)
        _wait_for(
            f"https://127.0.0.1:{ports['https']}/healthz",
            tmp_path / "error.log",
            verify=str(tls["cert"]),
        )
        yield {"ports": ports, "log": app_log, "cert": tls["cert"], "dir": tmp_path}
    finally:
        _stop(nginx)
        _stop(app)


def _lying_request(sock: socket.socket) -> tuple[str, float]:
    """POST announcing 1000 bytes and sending 11; return the status line and the seconds."""
    started = time.monotonic()
    sock.sendall(
        b"POST /checkout_sessions HTTP/1.1\r\nHost: shop.example.com\r\n"
        b"Authorization: Bearer demo\r\nAPI-Version: 2026-04-17\r\nIdempotency-Key: lie-1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"currency"'
    )
    sock.settimeout(20)
    answer = b""
    while b"\r\n\r\n" not in answer:
        part = sock.recv(4096)
        if not part:
            break
        answer += part
    while True:  # the rest, until the server closes
        try:
            part = sock.recv(4096)
        except (TimeoutError, ssl.SSLError, OSError):
            break
        if not part:
            break
        answer += part
    return answer.decode(errors="replace"), time.monotonic() - started


def test_a_lying_content_length_without_nginx_is_a_400_and_the_worker_lives(stack):
    port = stack["ports"]["app"]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answer, seconds = _lying_request(sock)
    assert answer.startswith("HTTP/1.1 400"), answer
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["code"] == "request_body_timeout"
    assert seconds < 5  # SHOP_BODY_TIMEOUT=1, not gunicorn's 60 s worker timeout
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    log = stack["log"].read_text()
    assert "WORKER TIMEOUT" not in log and "was sent SIGKILL" not in log


def test_behind_the_shipped_nginx_site(stack):
    https = f"https://127.0.0.1:{stack['ports']['https']}"
    cert = str(stack["cert"])
    # TLS, proxied, and the access log line carries the request id and the client.
    ok = requests.get(f"{https}/healthz", verify=cert, timeout=5)
    assert ok.status_code == 200 and ok.headers["Request-Id"].startswith("req_")
    deadline = time.monotonic() + 5
    while ok.headers["Request-Id"] not in stack["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(x for x in stack["log"].read_text().splitlines() if ok.headers["Request-Id"] in x)
    assert '"GET /healthz HTTP/1.0"' in line or '"GET /healthz HTTP/1.1"' in line
    # Plain http moves to https; /metrics is not reachable from outside.
    moved = requests.get(
        f"http://127.0.0.1:{stack['ports']['http']}/feeds/products.json",
        allow_redirects=False,
        timeout=5,
    )
    assert moved.status_code == 301 and moved.headers["Location"].startswith("https://")
    assert requests.get(f"{https}/metrics", verify=cert, timeout=5).status_code == 403
    # A checkout through nginx.
    created = requests.post(
        f"{https}/checkout_sessions",
        verify=cert,
        timeout=10,
        headers={
            "Authorization": "Bearer demo",
            "API-Version": "2026-04-17",
            "Idempotency-Key": "through-nginx-1",
        },
        json={
            "currency": "usd",
            "capabilities": {},
            "line_items": [{"id": "ebook-single", "quantity": 1}],
        },
    )
    assert created.status_code == 201, created.text

    # A lying Content-Length stops at nginx: after client_body_timeout it closes the connection
    # (logging 408), and gunicorn never sees the request.
    deadline = time.monotonic() + 5  # the access line is written after the answer
    while created.headers["Request-Id"] not in stack["log"].read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    posts = stack["log"].read_text().count("POST /checkout_sessions")
    context = ssl.create_default_context(cafile=cert)
    with (
        socket.create_connection(("127.0.0.1", stack["ports"]["https"])) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as sock,
    ):
        answer, seconds = _lying_request(sock)
    assert answer == "" or answer.startswith("HTTP/1.1 408"), answer
    assert seconds < 5
    assert '"POST /checkout_sessions HTTP/1.1" 408' in (stack["dir"] / "access.log").read_text()
    time.sleep(0.2)
    assert stack["log"].read_text().count("POST /checkout_sessions") == posts

    # Bodies over 1 MiB stop at nginx too.
    big = requests.post(
        f"{https}/checkout_sessions", verify=cert, timeout=10, data=b"x" * (1024 * 1024 + 1)
    )
    assert big.status_code == 413

    # The checkout paths are rate-limited per client: a flood gets 429s.
    with requests.Session() as session:
        codes = [
            session.get(
                f"{https}/checkout_sessions/cs_nope",
                verify=cert,
                timeout=5,
                headers={"Authorization": "Bearer demo", "API-Version": "2026-04-17"},
            ).status_code
            for _ in range(70)
        ]
    assert 429 in codes and 404 in codes


def test_every_command_docs_deploy_md_runs_exists(make_app):
    """The merchant types `shop <command>` (docs/deploy.md's shortcut for flask … --app app)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert "--env-file /etc/shop/env --app app" in text
    cli = make_app().cli
    used = set(re.findall(r"(?m)(?:^|`)shop ((?:orders |webhooks )?[a-z]+)", text))
    assert {"check", "stock", "orders failed", "orders replay"} <= used
    for command in sorted(used):
        group, _, sub = command.partition(" ")
        found = cli.commands.get(group)
        assert found is not None, command
        if sub:
            assert sub in found.commands, command
    # and the files it copies are the shipped ones
    for path in ("deploy/shop.service", "deploy/nginx/shop.conf", "config.json", "products.json"):
        assert (ROOT / path).exists() and path.split("/")[-1] in text
