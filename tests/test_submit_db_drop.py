"""Fault injection (issue 11): the database connection of a rating submit dies, or its response
never reaches the client; the client retries with the same idempotency key and exactly one
rating is counted, with a consistent label and clip count.

Real HTTP against a live server and real Postgres: the test holds the clip's row lock from a
connection of its own so the submit waits inside its transaction, then kills the submit's
backend with ``pg_terminate_backend`` (a dropped connection, a restarted Postgres, a failover).
"""

import threading
import uuid

import httpx
import pytest
from django.db import connection

from annotation.models import Clip, ClipLabel, Lease, Rating
from annotation.services.labels import recompute_all_labels
from labelhub.security import issue_token
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round, scores
from tests.faults import own_connection
from tests.workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The submit's first statement: it locks the clip (annotation.services.ratings).
SUBMIT_WAITING = """
    SELECT pid FROM pg_stat_activity
     WHERE datname = current_database() AND wait_event_type = 'Lock'
       AND query LIKE '%FOR UPDATE OF c%' AND query LIKE '%idempotency_key%'
"""


@pytest.fixture
def leased(live_server):
    """An annotator's HTTP client (token auth) holding a lease on one clip: (client, clip id)."""
    round_ = make_round("r1", ratings_per_clip=3)
    make_ready_clips(round_, 1)
    user = make_user("anna", "annotator")
    token = issue_token(user)
    client = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Token {token}"}, timeout=30
    )
    response = client.post(f"/api/rounds/{round_.pk}/next/", json={})
    assert response.status_code == 200, response.text
    yield client, response.json()["clip"]["id"]
    client.close()


def submit_in_background(client: httpx.Client, clip_id: int, body: dict, **kwargs) -> dict:
    """POST the submit on a thread; the returned dict gets "response" or "error" when it ends."""
    outcome: dict = {}

    def post():
        try:
            outcome["response"] = client.post(f"/api/clips/{clip_id}/ratings/", json=body, **kwargs)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=post)
    outcome["thread"].start()
    return outcome


def waiting_submit_pids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(SUBMIT_WAITING)
        return [pid for (pid,) in cursor.fetchall()]


def assert_counted_once(clip_id: int, key: uuid.UUID, body_scores: dict) -> Rating:
    ratings = list(Rating.objects.filter(clip_id=clip_id))
    assert len(ratings) == 1 and ratings[0].idempotency_key == key
    assert Clip.objects.get(pk=clip_id).rating_count == 1
    label = ClipLabel.objects.get(clip_id=clip_id)
    assert label.count == 1 and label.means() == {k: float(v) for k, v in body_scores.items()}
    assert recompute_all_labels(dry_run=True).ok  # the stored label is what the ratings say
    assert not Lease.objects.filter(clip_id=clip_id).exists()
    return ratings[0]


def test_connection_dropped_mid_submit_then_retry_counts_one_rating(leased):
    client, clip_id = leased
    key = uuid.uuid4()
    body = {**scores(4, visual_motion=2), "seconds_spent": 12.5, "idempotency_key": str(key)}
    with own_connection() as holder:
        holder.execute("SELECT 1 FROM annotation_clip WHERE id = %s FOR UPDATE", [clip_id])
        first = submit_in_background(client, clip_id, body)
        wait_for(lambda: waiting_submit_pids(), timeout=30)
        (pid,) = waiting_submit_pids()
        with connection.cursor() as cursor:  # the submit's connection dies mid-transaction
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        first["thread"].join(timeout=30)
    # The client saw a failure, nothing was saved, the lease is still the annotator's.
    assert first.get("error") or first["response"].status_code >= 500, first
    assert not Rating.objects.filter(clip_id=clip_id).exists()
    assert Lease.objects.filter(clip_id=clip_id).exists()

    retry = client.post(f"/api/clips/{clip_id}/ratings/", json=body)
    assert retry.status_code == 201, retry.text
    rating = assert_counted_once(clip_id, key, scores(4, visual_motion=2))
    assert retry.json()["rating_id"] == rating.pk
    again = client.post(f"/api/clips/{clip_id}/ratings/", json=body)  # a second retry: harmless
    assert again.status_code == 200 and again.json()["rating_id"] == rating.pk
    assert_counted_once(clip_id, key, scores(4, visual_motion=2))


def test_commit_succeeded_but_response_lost_then_retry_returns_the_same_rating(leased):
    client, clip_id = leased
    key = uuid.uuid4()
    body = {**scores(2), "idempotency_key": str(key)}
    with own_connection() as holder:
        holder.execute("SELECT 1 FROM annotation_clip WHERE id = %s FOR UPDATE", [clip_id])
        # The client gives up waiting (a proxy timeout, a dropped Wi-Fi) while the server works on.
        first = submit_in_background(client, clip_id, body, timeout=httpx.Timeout(30, read=1.0))
        first["thread"].join(timeout=30)
        assert isinstance(first.get("error"), httpx.ReadTimeout), first
        assert waiting_submit_pids()  # the server is still inside the submit
    # The lock is released: the server's submit commits, with nobody to read its answer.
    wait_for(
        lambda: Rating.objects.filter(idempotency_key=key).exists(),
        timeout=30,
    )
    saved = Rating.objects.get(idempotency_key=key)

    retry = client.post(f"/api/clips/{clip_id}/ratings/", json=body)
    assert retry.status_code == 200, retry.text
    assert retry.json()["rating_id"] == saved.pk and retry.json()["created"] is False
    assert_counted_once(clip_id, key, scores(2))
