"""An admin watches runs in a real Chromium: a reward training run plots each dimension's training
loss, a GAPO run its preference metrics, a pairs run no empty charts."""

import pytest

from labelhub.dimensions import DIMENSION_KEYS
from runs.models import Run
from tests.browser import chromium_page, login
from tests.conftest import make_user


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_run_pages_plot_the_metrics_their_kind_reports(live_server):
    epochs = 3
    reward = Run.objects.create(
        kind=Run.Kind.REWARD_TRAINING,
        status=Run.Status.SUCCEEDED,
        step=18,
        total_steps=18,
        params={"config": {"dimension_overrides": {"text_consistency": {"contrastive_weight": 2}}}},
        # what train_reward reports: one "<dimension>/loss" per epoch, dimension after dimension
        metrics=[
            {"step": d * epochs + e + 1, f"{key}/loss": 0.1 / (e + 1)}
            for d, key in enumerate(DIMENSION_KEYS)
            for e in range(epochs)
        ],
    )
    gapo = Run.objects.create(
        kind=Run.Kind.GAPO,
        status=Run.Status.SUCCEEDED,
        metrics=[
            {"step": s, "loss": 0.7 - s / 10, "implicit_accuracy": 0.5, "grad_norm": 1.0}
            for s in (1, 2)
        ],
    )
    pairs = Run.objects.create(kind=Run.Kind.PAIRS, status=Run.Status.SUCCEEDED)
    running = Run.objects.create(
        kind=Run.Kind.GAPO, status=Run.Status.RUNNING, step=1, total_steps=4
    )
    make_user("ada", "admin")
    with chromium_page() as page:
        login(page, live_server.url, "ada", "pw-ada")

        page.goto(f"{live_server.url}/runs/{reward.pk}/")
        plots = page.locator("#plots svg.plot")
        assert plots.count() == 6
        assert [plots.nth(i).get_attribute("data-metric") for i in range(6)] == [
            f"{key}/loss" for key in DIMENSION_KEYS
        ]
        page.wait_for_function(
            "document.querySelectorAll('#plots svg.plot path.line').length === 6"
        )
        assert "Text-video consistency · training loss" in page.inner_text("#plots")
        assert "no data yet" not in page.inner_text("#plots")
        assert "Text consistency · Contrastive weight" in page.inner_text("#params")

        page.goto(f"{live_server.url}/runs/{gapo.pk}/")
        page.wait_for_function("document.querySelectorAll('#plots svg.plot').length === 4")
        page.wait_for_function("document.querySelector('svg[data-metric=loss] path.line') !== null")
        # a metric the run did not report says so instead of drawing a line
        margin = page.locator('svg[data-metric="reward_margin"]')
        page.wait_for_function(
            "document.querySelector('svg[data-metric=reward_margin] text') !== null"
        )
        assert "no data yet" in margin.inner_html()

        page.goto(f"{live_server.url}/runs/{pairs.pk}/")
        assert page.locator("#plots").count() == 0

        # a run that ends while watched: the page follows it and drops the cancel button
        page.goto(f"{live_server.url}/runs/{running.pk}/")
        assert page.locator("#cancel").is_visible()
        Run.objects.filter(pk=running.pk).update(status=Run.Status.SUCCEEDED)
        page.wait_for_function(
            "document.getElementById('status').textContent === 'succeeded'", timeout=15000
        )
        assert page.locator("#cancel").count() == 0
        page.goto("about:blank")  # stop polling before the live server goes away
