"""Schemathesis over the served OpenAPI schema, as annotator, lead and admin, against the live test
server: no request may get a 5xx, and every answer must match the schema (status code, content
type, body). Bounded in examples per operation; run alone with `make fuzz`.

The server runs as production does, not eagerly: a real worker on the ``default`` queue builds the
exports and imports the fuzzer asks for, and GPU runs (reward training, scoring, GAPO) wait in
Redis for GPU workers this test does not start. Eagerly, a request for ``gpus: 23`` ran 23
training ranks inside the request and timed out; in production it is a 202 and a queued run.

The CLI runs in a subprocess (its documented interface), each role with its own API token. Its
summary gives the counts printed at the end: operations, test cases, server errors per role.
"""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.services.rounds import RoundSettingsError, update_round_settings
from labelhub.security import issue_token
from runs.models import Run
from scoring.models import RewardModel
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round
from tests.workers import celery_worker

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = int(os.environ.get("LABELHUB_FUZZ_EXAMPLES", "12"))
ROLE_TIMEOUT_SECONDS = 200


def _fuzz(base_url: str, token: str, report_dir: Path) -> tuple[subprocess.CompletedProcess, Path]:
    junit = report_dir / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/api/schema/?format=json",
        "--url",
        base_url,
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        CHECKS,
        "--phases",
        os.environ.get("LABELHUB_FUZZ_PHASES", "examples,fuzzing"),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "10",
        "--workers",
        "4",
        "--continue-on-failure",
        "--no-shrink",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        "--output-truncate",
        "true",
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=ROLE_TIMEOUT_SECONDS,
        env=env,
        cwd=report_dir,
    )
    return proc, junit


def _summary(stdout: str) -> dict[str, int]:
    """Operations tested, test cases generated, and failures, from the CLI's closing summary."""
    out = {}
    tested = re.search(r"Tested:\s*(\d+)", stdout)
    cases = re.search(r"(\d+) generated", stdout)
    out["operations"] = int(tested.group(1)) if tested else -1
    out["examples"] = int(cases.group(1)) if cases else -1
    out["server_errors"] = len(re.findall(r"Server error", stdout))
    return out


def _failures(junit: Path) -> list[str]:
    if not junit.exists():
        return []
    tree = ET.parse(junit)
    found = []
    for case in tree.iter("testcase"):
        for failure in [*case.iter("failure"), *case.iter("error")]:
            message = (failure.get("message") or failure.text or "").strip()
            found.append(f"{case.get('name')}: {message[:1500]}")
    return found


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ["annotator", "lead", "admin"])
def test_schemathesis_finds_no_server_error_or_schema_mismatch(
    role, live_server, isolated_media, tmp_path
):
    # Something for the ids to hit: a round with ready clips, and the three users.
    round_ = make_round("fuzz-round")
    make_ready_clips(round_, 3)
    users = {
        "annotator": make_user("fuzz-annotator", "annotator"),
        "lead": make_user("fuzz-lead", "annotator", "lead"),
        "admin": make_user("fuzz-admin", "annotator", "admin"),
    }
    token = issue_token(users[role])

    worker_log = tmp_path / "worker.log"
    with celery_worker(queues="default", media_root=isolated_media, log_path=worker_log) as worker:
        proc, junit = _fuzz(live_server.url, token, tmp_path)
        assert worker.poll() is None, worker_log.read_text()[-4000:]
    summary = _summary(proc.stdout)
    print(f"fuzz {role}: {summary}")
    failures = _failures(junit)
    assert summary["operations"] > 0 and summary["examples"] > 0, proc.stdout[-4000:]
    assert proc.returncode == 0 and not failures, (
        f"{role}: {len(failures)} failing operation(s)\n"
        + "\n\n".join(failures)
        + "\n\n"
        + proc.stdout[-6000:]
    )


# The server errors the fuzzer and people found before, each pinned by one request.


@pytest.fixture
def api(db):
    def client_for(*roles: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(make_user("-".join(roles) + "-user", *roles))
        return client

    return client_for


def _schema(client: APIClient) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_superscript_round_filter_is_a_400_not_a_500(api):
    lead = api("lead")
    model = RewardModel.objects.create(name="rm", preset="tiny", checkpoint_dir="-")
    url = f"/api/reward-models/{model.pk}/scores/"
    bad = lead.get(url, {"round": "²"})
    assert bad.status_code == 400 and "round" in bad.json()
    assert lead.get(url, {"round": ""}).json() == {"results": []}
    assert lead.get(url, {"round": "7"}).json() == {"results": []}


def test_resume_with_a_list_for_max_steps_is_a_400_and_starts_nothing(api):
    admin = api("admin")
    run = Run.objects.create(kind=Run.Kind.GAPO, status="failed")
    for body in ({"max_steps": [1]}, {"max_steps": "many"}, {"max_steps": 0}, [1], None):
        response = admin.post(f"/api/training/runs/{run.pk}/resume/", body, format="json")
        assert response.status_code == 400, (body, response.content)
    assert Run.objects.count() == 1


def test_a_gold_rate_too_small_for_a_block_is_refused(db):
    round_ = make_round("gold")
    with pytest.raises(RoundSettingsError, match="at least 0.001"):
        update_round_settings(round_id=round_.pk, gold_rate=1e-310)
    round_.refresh_from_db()
    assert round_.gold_rate == 0


def test_export_operations_document_what_they_answer(api, django_capture_on_commit_callbacks):
    lead = api("lead")
    operations = _schema(lead)["paths"]["/api/lead/exports/"]
    listed = operations["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array"
    assert "202" in operations["post"]["responses"] and "200" not in operations["post"]["responses"]
    assert isinstance(lead.get("/api/lead/exports/").json(), list)
    with django_capture_on_commit_callbacks(execute=True):
        started = lead.post("/api/lead/exports/", {"test_fraction": 0.2}, format="json")
    assert started.status_code == 202 and started.json()["status"] in {
        "pending",
        "running",
        "ready",
    }
    bad_seed = lead.post("/api/lead/exports/", {"seed": 2**70}, format="json")
    assert bad_seed.status_code == 400 and "seed" in bad_seed.json()


def test_training_and_scoring_posts_document_their_request_bodies(api):
    schema = _schema(api("admin"))
    for path in (
        "/api/training/runs/",
        "/api/training/runs/{run_id}/resume/",
        "/api/reward-models/train/",
        "/api/reward-models/{reward_model_id}/score/",
        "/api/lead/exports/",
        "/api/pairwise/next/",
        "/api/pairwise/{task_id}/judge/",
    ):
        post = schema["paths"][path]["post"]
        assert "application/json" in post["requestBody"]["content"], path
        assert {"400", "401", "403", "413", "429"} <= set(post["responses"]), path


def test_nul_bytes_in_free_form_parameters_are_a_400(api):
    admin = api("admin")
    launch = admin.post(
        "/api/training/runs/",
        {"kind": "generation", "params": {"target_round": "a\x00b", "source_round_id": 1}},
        format="json",
    )
    assert launch.status_code == 400 and "NUL" in json.dumps(launch.json())
    train = admin.post(
        "/api/reward-models/train/", {"snapshot_id": 1, "config": {"x": ["\x00"]}}, format="json"
    )
    assert train.status_code == 400
    assert Run.objects.count() == 0


def test_unknown_api_addresses_answer_json(api):
    response = api("annotator").post("/api/training/runs/null,null/cancel/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
