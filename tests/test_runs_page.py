"""The Training runs page's defaults: what an admin launches with one click."""

import re

from annotation.services.rounds import create_round
from tests.conftest import client_for
from training.services.evaluation import BASE_ROUND


def test_the_base_generators_round_is_never_the_default_round_to_learn_from(admin_user):
    create_round(name="round 1")
    create_round(name=BASE_ROUND)  # newer: an evaluation made it after round 1
    page = client_for(admin_user).get("/runs/").content.decode()
    select = re.search(r'<select name="round_id">(.*?)</select>', page, re.S).group(1)
    options = re.findall(r">([^<]+)</option>", select)
    assert options == ["round 1", BASE_ROUND]  # newest first, except the base round, kept last
