"""A Python researcher's view of a trust node, through the standard ADBC Flight SQL driver: a
trust in `sdc` mode (exact partials to its coordinator, analysts protected by the cell key
method), and a trust in differential privacy mode (nothing exact to anyone)."""

import json
import os
import re
import subprocess
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service_fixture import wait_for_port

ROOT = Path(__file__).resolve().parents[2]
TESSERA = os.environ.get("TESSERA_BIN", str(ROOT / "target" / "debug" / "tessera"))


PASSWORD = "analyst password 1"


def tls_section(certs: Path, name: str) -> str:
    """The [tls] and [access] sections of a node.toml using `tessera certs dev` certificates."""
    return (
        f'[tls]\ncert = "{certs / (name + ".pem")}"\nkey = "{certs / (name + "-key.pem")}"\nclient_ca = "{certs / "ca.pem"}"\n\n'
        '[access]\ncoordinator_subject = "CN=tessera-coordinator, O=Tessera development"\n'
    )


def tls_options(certs: Path, present: str | None = None) -> dict:
    """ADBC options: trust the dev CA; with `present`, also present that certificate (mutual TLS)."""
    options = {"adbc.flight.sql.client_option.tls_root_certs": (certs / "ca.pem").read_text()}
    if present:
        options["adbc.flight.sql.client_option.mtls_cert_chain"] = (certs / f"{present}.pem").read_text()
        options["adbc.flight.sql.client_option.mtls_private_key"] = (certs / f"{present}-key.pem").read_text()
        # The coordinator names the project (which the trust must have approved) and who asked.
        options["adbc.flight.sql.rpc.call_header.x-tessera-project"] = "synthetic"
        options["adbc.flight.sql.rpc.call_header.x-tessera-requester"] = "operator@federation"
    return options


def connect(node, present: str | None = None, user: str | None = None, password: str = PASSWORD):
    options = tls_options(node["certs"], present)
    if user:
        options.update({"username": user, "password": password})
    return flight_sql.connect(node["uri"], db_kwargs=options, autocommit=True)


def start_node(out: Path, privacy: str):
    subprocess.run(
        [TESSERA, "gen", "--out", str(out), "--providers", "RRK", "--rows", "3000", "--seed", "7", "--privacy", privacy],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [TESSERA, "user", "add", "--file", str(out / "RRK" / "users.toml"), "alice", "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    config = out / "RRK" / "node.toml"
    port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text()).group(1))
    process = subprocess.Popen([TESSERA, "node", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process)
        yield {"uri": f"grpc+tls://127.0.0.1:{port}", "port": port, "dir": out / "RRK", "certs": out / "certs"}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    yield from start_node(tmp_path_factory.mktemp("data"), "sdc")


@pytest.fixture(scope="module")
def private_node(tmp_path_factory):
    yield from start_node(tmp_path_factory.mktemp("private"), "dp")


def exact_counts_by_sex(node) -> dict:
    episodes = pq.read_table(node["dir"] / "apc_episodes.parquet")
    expected = {}
    for sex in episodes.column("sex").to_pylist():
        expected[sex] = expected.get(sex, 0) + 1
    return expected


BY_SEX = "SELECT sex, count(*) AS episodes FROM apc_episodes GROUP BY sex ORDER BY sex"


def test_the_coordinator_over_mutual_tls_gets_the_exact_answer_as_an_arrow_table(node):
    with connect(node, present="coordinator") as conn, conn.cursor() as cur:
        cur.execute(BY_SEX)
        table = cur.fetch_arrow_table()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["sex", "episodes"]
    assert dict(zip(table.column("sex").to_pylist(), table.column("episodes").to_pylist())) == exact_counts_by_sex(node)


def test_an_analyst_signs_in_and_gets_protected_answers_with_the_disclosure_line(node):
    expected = exact_counts_by_sex(node)
    with connect(node, user="alice") as conn, conn.cursor() as cur:
        cur.execute(BY_SEX)
        table = cur.fetch_arrow_table()
    released = dict(zip(table.column("sex").to_pylist(), table.column("episodes").to_pylist()))
    assert released.keys() == expected.keys()
    # Perturbed by the cell key method: close to, and not necessarily equal to, the exact count.
    for sex, count in released.items():
        assert abs(count - expected[sex]) <= 5, (sex, count, expected[sex])
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert "disclosure" in " ".join(metadata), metadata


def test_an_analysts_fine_grained_query_has_no_cell_below_the_threshold(node):
    sql = (
        "SELECT treatment_specialty, age_band, sex, count(*) AS n FROM apc_episodes "
        "GROUP BY treatment_specialty, age_band, sex"
    )
    with connect(node, present="coordinator") as conn, conn.cursor() as cur:
        cur.execute(sql)
        exact = cur.fetch_arrow_table().column("n").to_pylist()
    assert min(exact) < 10, "the question must have small cells for this test to mean anything"
    with connect(node, user="alice") as conn, conn.cursor() as cur:
        cur.execute(sql)
        released = [n for n in cur.fetch_arrow_table().column("n").to_pylist() if n is not None]
    assert released, "some cells are large enough to release"
    assert min(released) >= 10, released


@pytest.mark.parametrize(
    "how, expected",
    [
        ({}, "no credentials"),
        ({"user": "alice", "password": "not her password"}, "wrong user name or password"),
        ({"user": "mallory"}, "wrong user name or password"),
        ({"present": "RRK"}, "no credentials"),
    ],
)
def test_anyone_else_is_unauthenticated(node, how, expected):
    with pytest.raises(Exception) as turned_away:
        with connect(node, **how) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM apc_episodes")
            cur.fetch_arrow_table()
    assert expected in str(turned_away.value)
    assert "Unauthenticated" in str(turned_away.value) or "UNAUTHENTICATED" in str(turned_away.value).upper()


def test_plaintext_gets_no_answer(node):
    with pytest.raises(Exception):
        with flight_sql.connect(f"grpc://127.0.0.1:{node['port']}", autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM apc_episodes")
            cur.fetch_arrow_table()


def test_row_level_query_gets_a_clear_refusal(node):
    with connect(node, user="alice") as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as refused:
            cur.execute("SELECT person_id, cost_gbp FROM apc_episodes")
            cur.fetch_arrow_table()
    message = str(refused.value)
    assert refused.type.__name__ == "ProgrammingError"
    assert "the query reads individual rows of apc_episodes, and rows never leave a trust" in message
    assert "(PermissionDenied;" in message


def test_identifier_comparison_is_refused_with_the_column_named(node):
    with connect(node, present="coordinator") as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as refused:
            cur.execute("SELECT count(*) FROM apc_episodes WHERE person_id = '0123456789abcdef'")
            cur.fetch_arrow_table()
    assert "refused: column person_id is an identifier and cannot be compared with a value" in str(refused.value)


def test_every_request_is_in_the_audit_log_and_the_chain_verifies(node):
    log = node["dir"] / "audit.jsonl"
    result = subprocess.run([TESSERA, "audit", "verify", str(log)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    principals = {(e["role"], e["principal"]) for e in entries}
    assert ("analyst", "alice") in principals
    assert ("coordinator", "CN=tessera-coordinator, O=Tessera development") in principals
    assert ("unauthenticated", "anonymous") in principals
    assert ("unauthenticated", "user mallory") in principals
    assert ("unauthenticated", "certificate CN=RRK, O=Tessera development") in principals
    # Identity comes from the TLS session and the password check, never from the client's claims.
    assert all(e["requester"] == "alice" for e in entries if e["role"] == "analyst")


def noisy_counts_by_sex(node, **how):
    with connect(node, **how) as conn, conn.cursor() as cur:
        # One aggregate, as a coordinator's fragment is: ordering is the coordinator's work.
        cur.execute("SELECT sex, count(*) AS episodes FROM apc_episodes GROUP BY sex")
        table = cur.fetch_arrow_table()
    return table, dict(zip(table.column("sex").to_pylist(), table.column("episodes").to_pylist()))


# A count of 10 records a person at ρ = 0.05: σ = 10 / √(2 · 0.05) ≈ 31.6.
SIGMA = 10 / (2 * 0.05) ** 0.5


@pytest.mark.parametrize("how", [{"present": "coordinator"}, {"user": "alice"}])
def test_a_private_trust_sends_no_exact_count_even_to_its_coordinator(private_node, how):
    exact = exact_counts_by_sex(private_node)
    table, released = noisy_counts_by_sex(private_node, **how)
    assert released.keys() == exact.keys()
    assert all(abs(released[k] - exact[k]) <= 5 * SIGMA for k in exact), (released, exact)
    assert released != exact, "noise was added"
    if "user" in how:
        metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        assert "differential privacy" in metadata["tessera.disclosure"], metadata
    # Asked again: the same answer (averaging cannot remove the noise).
    _, again = noisy_counts_by_sex(private_node, **how)
    assert again == released
