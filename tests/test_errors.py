"""One way to refuse: services raise ``ServiceError`` with a code; the API's exception handler
and the pages' ``show_error`` turn the code into the same status, and the request keeps nothing."""

import pytest
from django.test import Client

from annotation.models import Round, RoundGuidelines
from labelhub.errors import CODES, ServiceError
from labelhub.pages import STATUS_BY_CODE
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round

pytestmark = pytest.mark.django_db


def test_every_code_has_a_status_and_an_unknown_code_is_refused():
    assert set(STATUS_BY_CODE) == set(CODES)
    with pytest.raises(ValueError, match="unknown error code 'teapot'"):
        ServiceError("no", code="teapot")


@pytest.mark.parametrize(
    ("round_state", "status", "code"),
    [("missing", 404, "not_found"), ("closed", 409, "conflict"), ("team", 403, "forbidden")],
)
def test_the_api_answers_a_service_refusal_with_its_code_and_status(round_state, status, code):
    annotator = make_user("ann", "annotator")
    round_ = make_round("r1")
    make_ready_clips(round_, 1)
    if round_state == "closed":
        Round.objects.filter(pk=round_.pk).update(status=Round.Status.CLOSED)
    if round_state == "team":
        other = make_user("other", "annotator")
        round_.annotators.add(other)
    round_id = 999_999 if round_state == "missing" else round_.pk
    client = Client()
    client.force_login(annotator)
    response = client.post(f"/api/rounds/{round_id}/next/", {}, content_type="application/json")
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code and body["detail"]


def test_a_page_shows_the_refusal_and_answers_with_its_status(client):
    lead = make_user("lena", "lead")
    round_ = make_round("r1")
    client.force_login(lead)
    response = client.post(
        f"/lead/rounds/{round_.pk}/guidelines/", {"text": "x" * 100_001, "action": "save"}
    )
    assert response.status_code == 400
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("Guidelines not saved: ")
    assert not RoundGuidelines.objects.filter(round=round_).exists()
