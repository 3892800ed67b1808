"""A Python researcher's view of a trust node, through the standard ADBC Flight SQL driver."""

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
TESSERA = os.environ.get("TESSERA_BIN", str(ROOT / "target" / "debug" / "tessera"))


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the node exited early: {process.stderr.read().decode()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the node did not listen on port {port}")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    subprocess.run(
        [TESSERA, "gen", "--out", str(out), "--providers", "RRK", "--rows", "3000", "--seed", "7"],
        check=True,
        capture_output=True,
    )
    config = out / "RRK" / "node.toml"
    port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text()).group(1))
    process = subprocess.Popen([TESSERA, "node", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, process)
        yield {"uri": f"grpc://127.0.0.1:{port}", "dir": out / "RRK"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_aggregate_arrives_as_an_arrow_table_with_the_exact_answer(node):
    episodes = pq.read_table(node["dir"] / "apc_episodes.parquet")
    expected = {}
    for sex in episodes.column("sex").to_pylist():
        expected[sex] = expected.get(sex, 0) + 1

    with flight_sql.connect(node["uri"], autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT sex, count(*) AS episodes FROM apc_episodes GROUP BY sex ORDER BY sex")
        table = cur.fetch_arrow_table()

    assert isinstance(table, pa.Table)
    assert table.column_names == ["sex", "episodes"]
    assert dict(zip(table.column("sex").to_pylist(), table.column("episodes").to_pylist())) == expected


def test_row_level_query_gets_a_clear_refusal(node):
    with flight_sql.connect(node["uri"], autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as refused:
            cur.execute("SELECT person_id, cost_gbp FROM apc_episodes")
            cur.fetch_arrow_table()
    message = str(refused.value)
    assert refused.type.__name__ == "ProgrammingError"
    assert "refused: the query returns individual rows of apc_episodes" in message
    assert "(PermissionDenied;" in message


def test_identifier_comparison_is_refused_with_the_column_named(node):
    with flight_sql.connect(node["uri"], autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as refused:
            cur.execute("SELECT count(*) FROM apc_episodes WHERE person_id = '0123456789abcdef'")
            cur.fetch_arrow_table()
    assert "refused: column person_id is an identifier and cannot be compared with a value" in str(refused.value)


def test_every_request_is_in_the_audit_log_and_the_chain_verifies(node):
    log = node["dir"] / "audit.jsonl"
    result = subprocess.run([TESSERA, "audit", "verify", str(log)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
    decisions = [line for line in log.read_text().splitlines() if '"decision":"refused"' in line]
    assert len(decisions) >= 2
