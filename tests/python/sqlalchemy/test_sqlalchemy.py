"""`tessera serve` from SQLAlchemy through flightsql-dbapi, as Apache Superset connects to it
(`datafusion://user:password@host:port`), with pandas on top."""

import os
import sys
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy
from sqlalchemy import inspect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service_fixture import PASSWORD, federation  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with federation(tmp_path_factory.mktemp("sqlalchemy")) as service:
        # gRPC trusts the CA in this file, as an operator would set it for Superset.
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(service["ca"])
        url = f"datafusion://alice:{quote(PASSWORD)}@localhost:{service['port']}"
        engine = sqlalchemy.create_engine(url)
        yield engine
        engine.dispose()


def test_table_names_can_be_listed(engine):
    names = inspect(engine).get_table_names()
    assert {"apc_episodes", "ec_attendances", "op_appointments"} <= set(names)


def test_columns_can_be_inspected(engine):
    columns = {c["name"] for c in inspect(engine).get_columns("apc_episodes")}
    assert {"person_id", "los_days", "treatment_specialty"} <= columns


def test_pandas_reads_a_protected_answer(engine):
    frame = pd.read_sql("SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band ORDER BY age_band", engine)
    assert list(frame.columns) == ["age_band", "n"]
    # Every band of the public domain, each count with noise added at each trust.
    assert len(frame) == 8
    episodes = 6000  # the fixture's rows, across both trusts
    assert abs(frame["n"].sum() - episodes) < 5 * (8 * 2) ** 0.5 * 10 / (2 * 0.05) ** 0.5


def test_a_refused_query_raises_with_its_reason(engine):
    with pytest.raises(Exception) as refused:
        pd.read_sql("SELECT person_id FROM apc_episodes", engine)
    assert "the query reads individual rows of apc_episodes" in str(refused.value)
