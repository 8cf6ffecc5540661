"""Leads at work without Django admin: the team page, round restrictions that assignment honours,
model-assisted QA (the reward model's disagreements with humans, and its actions), and queues
ordered by the reward model."""

import re

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages

from annotation.models import Clip, GoldReference, Round
from annotation.services.assignment import AssignmentError, lease_next_clip
from labelhub.dimensions import DIMENSION_KEYS
from scoring.models import ClipScore, RewardModel
from scoring.services import update_queue_signals
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_lead_creates_an_annotator_who_sets_a_password_once_and_logs_in(client, lead):
    client.force_login(lead)
    response = client.post("/lead/team/new/", {"username": "nora", "roles": ["annotator"]})
    assert response.status_code == 302
    page = client.get("/lead/team/").content.decode()
    link = re.search(r'value="(http://testserver(/accounts/set-password/[^"]+))"', page).group(2)
    nora = User.objects.get(username="nora")
    assert not nora.has_usable_password() and nora.groups.get().name == "annotator"

    client.logout()
    form = client.get(link, follow=True)
    assert form.status_code == 200 and "Set your password" in form.content.decode()
    set_url = form.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": "a-long-pass-phrase", "new_password2": "a-long-pass-phrase"}
    )
    assert done.status_code == 302 and done.url == "/accounts/login/"
    assert client.login(username="nora", password="a-long-pass-phrase")
    client.logout()
    again = client.get(link, follow=True).content.decode()
    assert "This link has been used or has expired" in again


@pytest.mark.parametrize(
    "form, message",
    [
        ({"username": "bad name!", "roles": ["annotator"]}, "username: 1-150 letters"),
        ({"username": "anna", "roles": ["annotator"]}, "already exists"),
        ({"username": "zed", "roles": ["admin"]}, "only an admin can make someone an admin"),
        ({"username": "zed", "roles": ["wizard"]}, "unknown role(s): wizard"),
    ],
)
def test_bad_new_members_are_refused_with_a_message(client, lead, annotator, form, message):
    client.force_login(lead)
    response = client.post("/lead/team/new/", form, follow=True)
    assert response.status_code == 200
    (text,) = _messages(response)
    assert text.startswith("Not created:") and message in text
    assert not User.objects.filter(username="zed").exists()


def test_deactivate_change_roles_and_annotators_only_for_leads(client, lead, annotator):
    client.force_login(lead)
    client.post(f"/lead/team/{annotator.pk}/", {"action": "roles", "roles": ["annotator", "lead"]})
    assert set(annotator.groups.values_list("name", flat=True)) == {"annotator", "lead"}
    client.post(f"/lead/team/{annotator.pk}/", {"action": "deactivate"})
    annotator.refresh_from_db()
    assert not annotator.is_active
    refused = client.post(f"/lead/team/{lead.pk}/", {"action": "deactivate"}, follow=True)
    assert "you cannot deactivate yourself" in _messages(refused)[-1]

    other = make_user("olga", "annotator")
    client.force_login(other)
    assert client.get("/lead/team/").status_code == 403
    assert client.post(f"/lead/team/{lead.pk}/", {"action": "deactivate"}).status_code == 403


def test_a_restricted_round_hands_clips_only_to_its_team(client, lead):
    round_ = make_round("restricted")
    make_clip(round_, make_condition("img", "p"))
    member, outsider = make_user("member", "annotator"), make_user("outsider", "annotator")
    client.force_login(lead)
    client.post(f"/lead/rounds/{round_.pk}/team/", {"annotators": [member.pk]})
    assert list(round_.annotators.all()) == [member]

    assert lease_next_clip(round_id=round_.pk, annotator=member) is not None
    with pytest.raises(AssignmentError, match="open to a chosen team only"):
        lease_next_clip(round_id=round_.pk, annotator=outsider)
    client.force_login(outsider)
    refused = client.post(f"/api/rounds/{round_.pk}/next/")
    assert refused.status_code == 403 and "chosen team" in refused.json()["detail"]

    client.force_login(lead)
    client.post(f"/lead/rounds/{round_.pk}/team/", {})  # none ticked: open again
    assert round_.annotators.count() == 0
    assert lease_next_clip(round_id=round_.pk, annotator=outsider) is not None


def _scored_round(rewards: dict[str, float], *, human: dict[str, int] | None = None):
    """One condition per clip name; ClipScores with ``overall`` (and all six) = the reward."""
    round_ = make_round("qa", ratings_per_clip=3, max_ratings_per_clip=4)
    model = RewardModel.objects.create(name="rm", preset="tiny", checkpoint_dir="-")
    rater = make_user("rater", "annotator")
    clips, conditions = {}, {}
    for name, reward in rewards.items():
        group = name[0]  # 'a1' and 'a2' are two candidates of one condition
        if group not in conditions:
            conditions[group] = make_condition("img-" + group, "prompt " + group)
        clip = make_clip(round_, conditions[group])
        if human and name in human:
            rate(clip, rater, human[name])
        ClipScore.objects.create(
            clip=clip, reward_model=model, overall=reward, **dict.fromkeys(DIMENSION_KEYS, reward)
        )
        clips[name] = clip
    return round_, model, clips


def test_queue_orders_by_model_uncertainty_and_disagreement(db):
    # Condition a: rewards 0.50 vs 0.52 (a near tie: most uncertain); condition b: 0.1 vs 0.9.
    round_, model, clips = _scored_round(
        {"a1": 0.50, "a2": 0.52, "b1": 0.10, "b2": 0.90},
        human={"b1": 5, "a1": 3},  # b1: humans 1.0 vs model 0.1 (largest disagreement)
    )
    assert update_queue_signals(reward_model_id=model.pk, round_id=round_.pk) == 4
    uncertainty = {n: Clip.objects.get(pk=c.pk).model_uncertainty for n, c in clips.items()}
    assert uncertainty["a1"] == pytest.approx(0.98) and uncertainty["b2"] == pytest.approx(0.2)
    b1 = Clip.objects.get(pk=clips["b1"].pk)
    assert b1.model_disagreement == pytest.approx(0.9)
    assert Clip.objects.get(pk=clips["a1"].pk).model_disagreement == pytest.approx(0.0)

    def order(queue_order: str) -> list[str]:
        Round.objects.filter(pk=round_.pk).update(queue_order=queue_order)
        names = {c.pk: n for n, c in clips.items()}
        got = []
        for i in range(4):  # a fresh annotator each time sees the head of the queue
            lease = lease_next_clip(round_id=round_.pk, annotator=make_user(f"{queue_order}{i}"))
            got.append(names[lease.clip_id])
            lease.delete()
            Clip.objects.filter(pk=lease.clip_id).update(target_ratings=1, rating_count=1)  # full
        Clip.objects.filter(round=round_).update(target_ratings=3)
        for name in ("a2", "b2"):
            Clip.objects.filter(pk=clips[name].pk).update(rating_count=0)
        Clip.objects.filter(pk__in=[clips["b1"].pk, clips["a1"].pk]).update(rating_count=1)
        return got

    # Closest to completion: the two rated clips first (by id), then the rest by id.
    assert order("completion") == ["a1", "b1", "a2", "b2"]
    # Near tie first (a1, a2: 0.98), then by completion; b1/b2 are 0.8 apart (0.2).
    assert order("uncertainty") == ["a1", "a2", "b1", "b2"]
    # Largest |model - human| first; clips without human labels last.
    assert order("disagreement") == ["b1", "a1", "a2", "b2"]


def test_qa_panel_lists_disagreements_and_its_actions_work(client, lead):
    round_, model, clips = _scored_round({"a1": 0.9, "b1": 0.1}, human={"a1": 1, "b1": 1})
    client.force_login(lead)
    html = client.get(f"/lead/?round={round_.pk}").content.decode()
    assert 'id="model-qa"' in html and "rm vs the human mean" in html
    panel = html[html.index('id="model-qa"') :]
    first = re.search(r'data-dimension="visual_smoothness".*?data-clip="(\d+)"', panel, re.S)
    assert int(first.group(1)) == clips["a1"].pk  # gap 0.9 before gap 0.1

    response = client.post(
        f"/lead/qa/{round_.pk}/act/", {"clip_id": clips["a1"].pk, "action": "extra_rating"}
    )
    assert response.status_code == 302 and response.url == f"/lead/?round={round_.pk}"
    assert Clip.objects.get(pk=clips["a1"].pk).target_ratings == 4
    capped = client.post(
        f"/lead/qa/{round_.pk}/act/",
        {"clip_id": clips["a1"].pk, "action": "extra_rating", "from": "qa"},
        follow=True,
    )
    assert "the round's maximum" in _messages(capped)[-1]
    assert capped.redirect_chain[0][0] == f"/lead/qa/{round_.pk}/"

    gold = client.post(f"/lead/qa/{round_.pk}/act/", {"clip_id": clips["b1"].pk, "action": "gold"})
    assert gold.url == f"/lead/clips/{clips['b1'].pk}/"
    assert GoldReference.objects.get(clip=clips["b1"]).scores() == dict.fromkeys(DIMENSION_KEYS, 1)
    other_round = make_round("other")
    stranger = client.post(
        f"/lead/qa/{other_round.pk}/act/",
        {"clip_id": clips["b1"].pk, "action": "gold"},
        follow=True,
    )
    assert "No clip" in _messages(stranger)[-1]
