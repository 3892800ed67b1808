"""A researcher's Python session against `tessera serve`, through the standard ADBC Flight SQL
driver: sign in, browse the catalog, prepared statements with parameters, answers made private
at each trust (the default of `tessera gen`)."""

import json
import subprocess

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service_fixture import PASSWORD, TESSERA, federation


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with federation(tmp_path_factory.mktemp("service")) as running:
        yield running


def connect(service, user="alice", password=PASSWORD, project=None, spend=None):
    options = {
        "adbc.flight.sql.client_option.tls_root_certs": service["ca"].read_text(),
        "username": user,
        "password": password,
    }
    if project:
        options["adbc.flight.sql.rpc.call_header.x-tessera-project"] = project
    if spend:
        options["adbc.flight.sql.rpc.call_header.x-tessera-privacy-spend"] = spend
    return flight_sql.connect(service["uri"], db_kwargs=options, autocommit=True)


# The noise of one count at one trust: 10 records a person at the default ρ = 0.05 per question.
SIGMA = 10 / (2 * 0.05) ** 0.5
# Of a count merged from the two trusts, with a margin of five standard deviations.
MARGIN = 5 * SIGMA * 2**0.5


def exact_counts(service, column):
    counts = {}
    for trust in ["RRK", "RTH"]:
        for value in pq.read_table(service["dir"] / trust / "apc_episodes.parquet").column(column).to_pylist():
            counts[value] = counts.get(value, 0) + 1
    return counts


def test_a_researcher_signs_in_and_gets_the_protected_federated_answer(service):
    with connect(service) as conn, conn.cursor() as cur:
        cur.execute("SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex ORDER BY sex")
        table = cur.fetch_arrow_table()
    exact = exact_counts(service, "sex")
    released = dict(zip(table.column("sex").to_pylist(), table.column("n").to_pylist()))
    assert released.keys() == exact.keys()
    for sex, n in released.items():
        assert abs(n - exact[sex]) <= MARGIN, (sex, n, exact[sex])
    assert released != exact, "noise was added"
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert metadata["tessera.provenance"].startswith("2 of 2 trusts answered (RRK, RTH)")
    assert "privacy spent: RRK ρ = 0.05" in metadata["tessera.provenance"]
    assert "differential privacy" in metadata["tessera.disclosure"]
    # The count's noise arrives with the column: two trusts' variances add up.
    field = {k.decode(): v.decode() for k, v in (table.schema.field("n").metadata or {}).items()}
    assert float(field["tessera.noise_sd"]) == pytest.approx(SIGMA * 2**0.5, rel=1e-3), field
    assert float(field["tessera.sensitivity"]) == 10, field
    assert field["tessera.noise"].startswith("sd "), field
    assert not table.schema.field("sex").metadata, "a group key carries no noise"


def test_a_researcher_chooses_the_spend_of_a_question_within_the_trusts_cap(service):
    sql = "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band"
    with connect(service, spend="0.1") as conn, conn.cursor() as cur:
        cur.execute(sql)
        provenance = cur.fetch_arrow_table().schema.metadata[b"tessera.provenance"].decode()
    assert "RRK ρ = 0.1 " in provenance and "RTH ρ = 0.1 " in provenance, provenance
    for spend, refusal in [("0.5", "a question may spend at most ρ = 0.25"), ("lots", "is a ρ above 0")]:
        with pytest.raises(Exception) as refused:
            with connect(service, spend=spend) as conn, conn.cursor() as cur:
                cur.execute(sql + " ORDER BY 1")
                cur.fetch_arrow_table()
        assert refusal in str(refused.value), (spend, str(refused.value))


def test_every_cell_of_the_public_grid_is_released_empty_ones_too(service):
    sql = (
        "SELECT treatment_specialty, age_band, sex, count(*) AS n FROM apc_episodes "
        "GROUP BY treatment_specialty, age_band, sex"
    )
    with connect(service) as conn, conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetch_arrow_table()
    exact = {}
    for trust in ["RRK", "RTH"]:
        t = pq.read_table(service["dir"] / trust / "apc_episodes.parquet")
        for key in zip(*(t.column(c).to_pylist() for c in ["treatment_specialty", "age_band", "sex"])):
            exact[key] = exact.get(key, 0) + 1
    assert min(exact.values()) < 10, "the question must have small cells for this test to mean anything"
    released = set(zip(*(table.column(c).to_pylist() for c in ["treatment_specialty", "age_band", "sex"])))
    # Nothing is withheld on a true count, and cells no record falls in are there as well (with
    # noise): which cells are released tells nothing.
    assert released >= exact.keys()
    assert len(released) > len(exact), "empty cells of the public grid are released too"
    assert None not in table.column("n").to_pylist()


@pytest.mark.parametrize(
    "user, password",
    [("alice", "not her password"), ("mallory", PASSWORD)],
)
def test_a_wrong_password_is_unauthenticated_and_audited(service, user, password):
    with pytest.raises(Exception) as turned_away:
        with connect(service, user=user, password=password) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM apc_episodes")
            cur.fetch_arrow_table()
    assert "wrong user name or password" in str(turned_away.value)
    entries = [json.loads(line) for line in service["audit"].read_text().splitlines()]
    assert any(e["role"] == "unauthenticated" and e["principal"] == f"user {user}" for e in entries)


def test_the_catalog_can_be_browsed(service):
    with connect(service) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        schema = conn.adbc_get_table_schema("apc_episodes", db_schema_filter="public")
        types = conn.adbc_get_table_types()
    tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert {"apc_episodes", "ec_attendances", "op_appointments"} <= tables
    assert "person_id" in schema.names and "los_days" in schema.names
    assert {"TABLE", "VIEW"} <= set(types)


def test_a_prepared_query_runs_twice_and_binds_a_parameter(service):
    exact = exact_counts(service, "sex")
    with connect(service) as conn, conn.cursor() as cur:
        answers = []
        for _ in range(2):
            cur.execute("SELECT count(*) AS n FROM apc_episodes WHERE sex = ?", parameters=("F",))
            answers.append(cur.fetch_arrow_table().column("n").to_pylist())
        # The same question on the same data: the same answer (its noise cannot be averaged away).
        assert answers[0] == answers[1]
        assert abs(answers[0][0] - exact["F"]) <= MARGIN
        # A parameter is a value, never SQL: no record has that sex, so the count is only noise.
        cur.execute("SELECT count(*) AS n FROM apc_episodes WHERE sex = ?", parameters=("F' OR '1'='1",))
        assert abs(cur.fetch_arrow_table().column("n")[0].as_py()) <= MARGIN


def test_a_refused_query_says_why(service):
    with connect(service) as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as refused:
            cur.execute("SELECT person_id, cost_gbp FROM apc_episodes")
            cur.fetch_arrow_table()
    assert "the query reads individual rows of apc_episodes, and rows never leave a trust" in str(refused.value)


def test_projects_are_the_users_own_and_each_trust_records_who_asked(service):
    # bob's only project has not been approved by the trusts: they refuse it, and he hears why.
    with pytest.raises(flight_sql.ProgrammingError) as not_approved:
        with connect(service, user="bob") as conn, conn.cursor() as cur:
            cur.execute("SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band")
            cur.fetch_arrow_table()
    assert "project `second` is not approved by this trust" in str(not_approved.value)
    with pytest.raises(Exception) as refused:
        with connect(service, user="bob", project="synthetic") as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM apc_episodes")
            cur.fetch_arrow_table()
    assert "you may not ask for project `synthetic`" in str(refused.value)
    # bob's question reached the trust as bob's, in his project.
    trust_log = [json.loads(line) for line in (service["dir"] / "RRK" / "audit.jsonl").read_text().splitlines()]
    bobs = [e for e in trust_log if e["requester"] == "bob"]
    assert bobs and all(e["project"] == "second" and e["decision"] == "refused" for e in bobs)


def test_the_service_audit_log_verifies(service):
    result = subprocess.run([TESSERA, "audit", "verify", str(service["audit"])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
