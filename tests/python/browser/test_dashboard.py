"""The dashboard in a real headless Chromium (the system's, driven by Playwright): sign-in, the
default NHS productivity dashboard's charts against the protected answers, captions, filters,
ad-hoc SQL, refusals, and no request to any other host."""

import os
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service_fixture import PASSWORD, ROOT, federation  # noqa: E402

CHROMIUM = os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium")
DASHBOARD = tomllib.loads((ROOT / "flight-server" / "src" / "web" / "default_dashboard.toml").read_text())


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # The charts, each filter and the ad-hoc questions are about twenty new questions: more than
    # one project's default budget of ρ = 1 at ρ = 0.05 each.
    with federation(tmp_path_factory.mktemp("dashboard"), project_budget=5.0) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, service):
    # The development certificate is for localhost, signed by the federation's own CA.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.requests = requests
    yield page
    context.close()


def sign_in(page, service, user="alice", password=PASSWORD):
    page.goto(service["web"] + "/dashboard")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def protected_answer(service, sql):
    options = {
        "adbc.flight.sql.client_option.tls_root_certs": service["ca"].read_text(),
        "username": "alice",
        "password": PASSWORD,
    }
    with flight_sql.connect(service["uri"], db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def without_filters(sql):
    return re.sub(r"\{(trust|period):[A-Za-z0-9_.]+\}", "(TRUE)", sql)


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_dashboard(page, service):
    sign_in(page, service, password="not the password")
    expect(page.locator("p.error")).to_contain_text("wrong user name or password")
    expect(page).to_have_url(re.compile(r"/signin$"))
    sign_in(page, service)
    expect(page.locator("h1")).to_have_text("NHS productivity")
    expect(page.locator("strong.user")).to_have_text("alice")
    cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-tessera_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"


def test_each_chart_draws_the_protected_answer_with_provenance_and_disclosure(page, service):
    sign_in(page, service)
    figures = page.locator("figure.chart")
    expect(figures).to_have_count(len(DASHBOARD["charts"]))
    for i, chart in enumerate(DASHBOARD["charts"]):
        answer = protected_answer(service, without_filters(chart["sql"]))
        values = [v for v in answer.column(chart["y"]).to_pylist() if v is not None]
        assert values, chart["title"]
        figure = page.locator(f"figure#chart-{i}")
        mark = "rect.bar" if chart["kind"] == "bar" else "circle.point"
        assert figure.locator(mark).count() == len(values), chart["title"]
        xs = set(str(x) for x in answer.column(chart["x"]).to_pylist())
        series = set(answer.column(chart["series"]).to_pylist()) if "series" in chart else {None}
        assert figure.locator("rect.withheld").count() == len(xs) * len(series) - len(values), chart["title"]
        caption = figure.locator("figcaption")
        expect(caption.locator(".provenance")).to_contain_text("2 of 2 trusts answered (RRK, RTH)")
        expect(caption.locator(".disclosure")).to_contain_text("disclosure control: differential privacy")
        expect(figure.locator("svg > title")).to_have_text(chart["title"])
    # The data table is there on demand, and the CSV is the same answer.
    first = page.locator("figure#chart-1")
    first.locator("summary").click()
    expect(first.locator("table.data tbody tr")).to_have_count(first.locator("rect.bar").count())
    csv = page.request.get(service["web"] + first.locator("a.csv").get_attribute("href"))
    assert csv.ok and csv.text().splitlines()[0] == "trust,pct_within_4h"
    assert "2 of 2 trusts answered" in csv.headers["x-tessera-provenance"]


def test_the_page_shows_what_the_project_has_spent_at_each_trust(page, service):
    sign_in(page, service)
    budget = page.locator("section.budget")
    expect(budget.locator("h2")).to_have_text("Privacy budget of project synthetic")
    expect(budget.locator("li")).to_have_count(2)
    for trust in ["RRK", "RTH"]:
        line = budget.locator("li", has=page.locator("strong.trust", has_text=trust))
        # The charts asked before the line was read: the project has spent at this trust, and the
        # line says how much of the budget set in node.toml is left.
        expect(line).to_contain_text(re.compile(r": spent [0-9.]+ of 5 \([0-9.]+ left\) in [1-9][0-9]* questions"))


def test_the_trust_filter_re_runs_the_charts_for_one_trust(page, service):
    sign_in(page, service)
    page.select_option("select[name=trust]", "RRK")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"trust=RRK"))
    # By-trust charts now have one bar; the monthly series one line.
    expect(page.locator("figure#chart-1 rect.bar")).to_have_count(1)
    expect(page.locator("figure#chart-4 rect.bar")).to_have_count(1)
    expect(page.locator("figure#chart-0 polyline.line")).to_have_count(1)


def test_the_period_filter_keeps_whole_months_of_the_monthly_charts(page, service):
    sign_in(page, service)
    all_points = page.locator("figure#chart-0 circle.point").count()
    page.fill("input[name=from]", "2024-01")
    page.fill("input[name=to]", "2024-03")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"from=2024-01"))
    # Three months, two trusts.
    expect(page.locator("figure#chart-0 circle.point")).to_have_count(6)
    assert all_points > 6
    labels = page.locator("figure#chart-0 .x-axis text").all_text_contents()
    assert labels == ["2024-01-01", "2024-02-01", "2024-03-01"], labels


def test_ad_hoc_sql_gives_a_table_and_a_chart_and_a_refusal_gives_its_reason(page, service):
    sign_in(page, service)
    page.fill("textarea[name=sql]", "SELECT age_band, count(*) AS admissions FROM apc_episodes GROUP BY age_band ORDER BY age_band")
    page.press("textarea[name=sql]", "Control+Enter")
    result = page.locator("section.ad-hoc-result")
    expect(result.locator("table.data tbody tr")).to_have_count(8)
    expect(result.locator("rect.bar")).to_have_count(8)
    expect(result.locator(".provenance")).to_contain_text("2 of 2 trusts answered")
    page.fill("textarea[name=sql]", "SELECT person_id, cost_gbp FROM apc_episodes")
    page.click("form.ad-hoc button[type=submit]")
    expect(page.locator("section.ad-hoc-result p.refused")).to_contain_text(
        "the query reads individual rows of apc_episodes, and rows never leave a trust"
    )


def test_no_request_leaves_the_service_and_signing_out_ends_the_session(page, service):
    sign_in(page, service)
    expect(page.locator("figure.chart")).to_have_count(len(DASHBOARD["charts"]))
    host = urlparse(service["web"]).netloc
    assert page.requests and all(urlparse(url).netloc == host for url in page.requests), page.requests
    shot = os.environ.get("TESSERA_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    page.click("form[action='/signout'] button")
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.goto(service["web"] + "/dashboard")
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_forms_without_their_token_are_refused_and_nothing_runs(page, service):
    sign_in(page, service)
    audit_lines = len(service["audit"].read_text().splitlines())
    # What another site could make this browser send: the session cookie, but not the form token.
    for path, form in [("/query", {"sql": "SELECT count(*) FROM apc_episodes", "csrf": "0" * 32}), ("/signout", {})]:
        response = page.request.post(service["web"] + path, form=form, max_redirects=0)
        assert response.status == 400, (path, response.status)
        assert "the form had expired" in response.text()
    # Even with the right token, a form posted from another origin is refused.
    token = page.locator("form.ad-hoc input[name=csrf]").get_attribute("value")
    form = {"sql": "SELECT count(*) FROM apc_episodes", "csrf": token}
    response = page.request.post(service["web"] + "/query", form=form, headers={"Origin": "https://evil.example"})
    assert response.status == 400, response.status
    assert len(service["audit"].read_text().splitlines()) == audit_lines, "a question ran"
    response = page.request.post(service["web"] + "/query", form=form, headers={"Origin": service["web"]})
    assert response.status == 200 and "section" in response.text()
    # Still signed in: the sign-out did not happen either.
    page.goto(service["web"] + "/dashboard")
    expect(page.locator("strong.user")).to_have_text("alice")
