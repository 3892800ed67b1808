"""Starts a small federation and `tessera serve` over it, for client tests (standard library only,
so that the ADBC and the SQLAlchemy virtual environments can both use it)."""

import os
import re
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESSERA = os.environ.get("TESSERA_BIN", str(ROOT / "target" / "debug" / "tessera"))

PASSWORD = "service password 1"
# user -> projects (the first is the default)
USERS = {"alice": ["synthetic", "second"], "bob": ["second"]}


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process exited early: {process.stderr.read().decode()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port}")


@contextmanager
def federation(out: Path, rows: int = 6000, project_budget: float | None = None):
    """Two trusts' nodes and the service, as `tessera gen` sets them up (differential privacy at
    each trust), with users alice and bob; `project_budget` raises each trust's ρ per project
    for suites that ask more new questions than one project's default allows."""
    subprocess.run(
        [TESSERA, "gen", "--out", str(out), "--providers", "RRK,RTH", "--rows", str(rows), "--seed", "11"],
        check=True,
        capture_output=True,
    )
    if project_budget is not None:
        for trust in ["RRK", "RTH"]:
            config = out / trust / "node.toml"
            text = config.read_text()
            assert "project_budget = 1.0\n" in text
            config.write_text(text.replace("project_budget = 1.0\n", f"project_budget = {project_budget}\n"))
    for user, projects in USERS.items():
        subprocess.run(
            [TESSERA, "user", "add", "--file", str(out / "users.toml"), user, "--projects", ",".join(projects), "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
    processes = []
    try:
        for trust in ["RRK", "RTH"]:
            config = out / trust / "node.toml"
            port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text()).group(1))
            process = subprocess.Popen([TESSERA, "node", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            processes.append(process)
            wait_for_port(port, process)
        federation_file = out / "federation.toml"
        server = federation_file.read_text().split("[server]", 1)[1]
        port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', server).group(1))
        http = int(re.search(r'http = "127\.0\.0\.1:(\d+)"', server).group(1))
        process = subprocess.Popen(
            [TESSERA, "serve", "--config", str(federation_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        processes.append(process)
        wait_for_port(port, process)
        wait_for_port(http, process)
        yield {
            "dir": out,
            "port": port,
            "uri": f"grpc+tls://127.0.0.1:{port}",
            "web": f"https://localhost:{http}",
            "ca": out / "certs" / "ca.pem",
            "audit": out / "service" / "audit.jsonl",
        }
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
