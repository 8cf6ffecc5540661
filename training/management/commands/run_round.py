"""manage.py run_round: one round of the loop, from a rated round to the next round's candidates.

    manage.py run_round --round 1 --train-reward --steps 20 --candidates 4 --next-round round-2
    manage.py run_round --round 1 --reward-model 3 --loss dpo --next-round round-2
    manage.py run_round --resume 17          # a failed round, from the step that failed
    manage.py run_round --round 1 --train-reward --next-round round-2 --evaluate
                                             # ... then policy-vs-base tasks for the judges

Export -> reward training (or the given model) -> scoring -> pairs -> training -> generation ->
import into the next round -> scoring the new candidates, as one "round" run whose steps are
child runs. It runs here with a progress bar (``--enqueue`` sends it to the gpu queue instead);
the generation step waits for the default-queue workers to import the candidates.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Clip, Round
from runs.cli import run_here
from runs.models import Run
from runs.services import queue_for
from scoring.anime_reward.config import OBJECTIVES
from training import selectors
from training.services.evaluation import SCOPES
from training.services.launch import InvalidParams
from training.services.loop import LOSSES, launch_round, resume_round


def _round_id(value: str) -> int:
    if value.isdigit():
        return int(value)
    round_ = Round.objects.filter(name=value).first()
    if round_ is None:
        raise CommandError(f"no round named {value!r}")
    return round_.pk


class Command(BaseCommand):
    help = (
        "Run one round of the loop (export, reward, scoring, pairs, training, generation, import)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--round", help="the rated round to learn from (id or name)")
        reward = parser.add_mutually_exclusive_group()
        reward.add_argument("--reward-model", type=int, help="score with this reward model (id)")
        reward.add_argument(
            "--train-reward",
            action="store_true",
            help="export the round's labels and train a new reward model on them",
        )
        parser.add_argument("--loss", choices=LOSSES, default="gapo", help="policy training loss")
        parser.add_argument("--steps", type=int, default=1000, help="policy training steps")
        parser.add_argument(
            "--candidates", type=int, default=4, help="candidates generated per condition (K)"
        )
        parser.add_argument("--next-round", help="round that receives the candidates (created)")
        parser.add_argument(
            "--init-checkpoint",
            type=int,
            help="policy checkpoint to start from (default: the one that generated the round)",
        )
        parser.add_argument("--reward-epochs", type=int, help="reward training epochs")
        parser.add_argument(
            "--reward-objective",
            choices=OBJECTIVES,
            default="regression",
            help="what the new reward model learns from: label means, A/B judgements or both",
        )
        parser.add_argument(
            "--test-fraction", type=float, help="held-out share of the export (default 0.1)"
        )
        parser.add_argument("--seed", type=int, default=0, help="export split and sampling seed")
        parser.add_argument(
            "--gpus",
            type=int,
            help="train the policy, and the reward model where it trains heads only, on this many "
            "GPUs of one host (accelerate launch); with --enqueue the round goes to the gpu-xN "
            "queue",
        )
        parser.add_argument(
            "--chunk-conditions", type=int, help="conditions per generation chunk (default 2)"
        )
        parser.add_argument("--chunk-clips", type=int, help="clips per scoring chunk (default 200)")
        parser.add_argument(
            "--evaluate",
            nargs="?",
            const="held_out",
            choices=SCOPES,
            help="end with a human evaluation: policy-vs-base pairwise tasks (3 judges) on the "
            "held-out conditions of the export (default) or all of the round's conditions",
        )
        parser.add_argument("--resume", type=int, metavar="RUN", help="resume a failed round run")
        parser.add_argument("--user", help="username recorded as the launcher")
        parser.add_argument(
            "--enqueue", action="store_true", help="send to the gpu queue instead of running here"
        )

    def handle(self, *args, **o):
        try:
            if o["resume"] is not None:
                run = resume_round(run_id=o["resume"], send=o["enqueue"])
                self.stdout.write(f"resuming round run {run.pk}: steps already done are skipped")
            else:
                run = self._launch(o)
        except InvalidParams as error:
            raise CommandError(str(error)) from error
        if o["enqueue"]:
            self.stdout.write(
                f"queued {run} on the {queue_for(run.params)} queue; watch it at /runs/{run.pk}/"
            )
            return
        try:
            run = run_here(run, f"round run {run.pk}")
        except CommandError as error:
            self._summary(Run.objects.get(pk=run.pk))
            raise CommandError(
                f"{error}\nfix the cause, then resume: manage.py run_round --resume {run.pk}"
            ) from None
        self._summary(run)
        self.stdout.write(self.style.SUCCESS(f"round run {run.pk} succeeded"))

    def _launch(self, o) -> Run:
        if not o["round"] or not o["next_round"]:
            raise CommandError("--round and --next-round are required (or --resume RUN)")
        if o["reward_model"] is None and not o["train_reward"]:
            raise CommandError("give --reward-model ID or --train-reward")
        launcher = None
        if o["user"]:
            launcher = get_user_model().objects.filter(username=o["user"]).first()
            if launcher is None:
                raise CommandError(f"no user {o['user']!r}")
        params = {
            "round_id": _round_id(o["round"]),
            "next_round": o["next_round"],
            "reward_model_id": o["reward_model"],
            "train_reward": o["train_reward"],
            "loss": o["loss"],
            "steps": o["steps"],
            "candidates": o["candidates"],
            "init_checkpoint_id": o["init_checkpoint"],
            "reward_epochs": o["reward_epochs"],
            "reward_objective": o["reward_objective"],
            "test_fraction": o["test_fraction"],
            "seed": o["seed"],
            "gpus": o["gpus"],
            "chunk_conditions": o["chunk_conditions"],
            "chunk_clips": o["chunk_clips"],
            "evaluate": o["evaluate"] or "",
        }
        run = launch_round(params=params, created_by=launcher, send=o["enqueue"])
        self.stdout.write(f"launched {run}")
        return run

    def _summary(self, run: Run) -> None:
        """Each step: state, its runs, its output; then the next round's clip count."""
        for number, step in enumerate(selectors.round_steps(run), start=1):
            attempts = ", ".join(f"run {r.pk} {r.status}" for r in step["runs"]) or "no run"
            output = f"{step['output_name']}={step['output']}" if step["output"] is not None else ""
            self.stdout.write(
                f"  {number}. {step['label']:<26} {step['state']:<10} {attempts:<24} {output}"
            )
        next_round_id = run.artifacts.get("next_round_id")
        if next_round_id:
            clips = Clip.objects.filter(round_id=next_round_id)
            ready = clips.filter(status=Clip.Status.READY).count()
            self.stdout.write(
                f"round {run.params['next_round']!r} (id {next_round_id}): {clips.count()} clips, "
                f"{ready} ready for annotators; annotate at /annotate/{next_round_id}/"
            )
        self.stdout.write(f"run page: /runs/{run.pk}/ · scoreboard: /scoreboard/")
