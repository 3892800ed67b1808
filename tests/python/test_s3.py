"""A node reading its tables from S3-compatible object storage (a local moto server), credentials from the environment."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import boto3
import pyarrow.parquet as pq
import pytest

from service_fixture import wait_for_port
from test_node import TESSERA, tls_options, tls_section


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    port = _free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_node_serves_tables_from_s3_files_and_folders(s3, tmp_path):
    subprocess.run([TESSERA, "gen", "--out", str(tmp_path), "--providers", "RTH", "--rows", "2000", "--seed", "4"], check=True, capture_output=True)
    local = tmp_path / "RTH"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1", AWS_ENDPOINT=s3, AWS_ALLOW_HTTP="true")
    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    bucket.create_bucket(Bucket="trust-rth")
    for table in ["apc_episodes", "ec_attendances", "workforce_finance_monthly"]:
        bucket.upload_file(str(local / f"{table}.parquet"), "trust-rth", f"extract/{table}.parquet")
    # A folder of part files is one table.
    for part in ["part-0", "part-1"]:
        bucket.upload_file(str(local / "op_appointments.parquet"), "trust-rth", f"extract/op/{part}.parquet")

    port = _free_port()
    config = tmp_path / "s3-node.toml"
    tables = "".join(
        f'[[tables]]\nname = "{name}"\nlocation = "{location}"\nformat = "parquet"\n\n'
        for name, location in [
            ("apc_episodes", "s3://trust-rth/extract/apc_episodes.parquet"),
            ("ec_attendances", "s3://trust-rth/extract/ec_attendances.parquet"),
            ("op_appointments", "s3://trust-rth/extract/op/"),
            ("workforce_finance_monthly", "s3://trust-rth/extract/workforce_finance_monthly.parquet"),
        ]
    )
    config.write_text(f'[node]\nname = "RTH"\nlisten = "127.0.0.1:{port}"\naudit_log = "s3-audit.jsonl"\n\n{tables}{tls_section(tmp_path / "certs", "RTH")}')
    node = subprocess.Popen([TESSERA, "node", "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, node)
        options = tls_options(tmp_path / "certs", present="coordinator")
        with flight_sql.connect(f"grpc+tls://127.0.0.1:{port}", db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM apc_episodes")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [pq.read_metadata(local / "apc_episodes.parquet").num_rows]
            cur.execute("SELECT count(*) AS n FROM op_appointments")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [2 * pq.read_metadata(local / "op_appointments.parquet").num_rows]
    finally:
        node.terminate()
        node.wait(timeout=10)


def test_a_missing_s3_object_stops_the_node_with_the_table_named(s3, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1", AWS_ENDPOINT=s3, AWS_ALLOW_HTTP="true")
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="empty-trust")
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nname = "RTH"\nlisten = "127.0.0.1:1"\naudit_log = "a.jsonl"\n\n'
        '[[tables]]\nname = "apc_episodes"\nlocation = "s3://empty-trust/nothing/"\nformat = "parquet"\n\n'
        + tls_section(tmp_path / "certs", "RTH")
    )
    subprocess.run([TESSERA, "certs", "dev", "--out", str(tmp_path / "certs"), "--names", "RTH"], check=True, capture_output=True)
    result = subprocess.run([TESSERA, "node", "--config", str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: the node did not start: {config}: [[tables]] `apc_episodes`: cannot read s3://empty-trust/nothing/")
    assert "panicked" not in result.stderr
