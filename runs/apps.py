from django.apps import AppConfig


class RunsConfig(AppConfig):
    """GPU jobs: the Run row and its lifecycle. The bottom layer: imports no other app."""

    name = "runs"
    verbose_name = "GPU runs"
