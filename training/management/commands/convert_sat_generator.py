"""manage.py convert_sat_generator CHECKPOINT --base RELEASED --out DIR: turn a SAT CogVideoX-5B
I2V checkpoint (Index-AniSora's GAPO-tuned ``5B_RL``) into the diffusers layout the
``cogvideox-5b-i2v`` preset loads, so it can be a baseline or a round's starting generator
(point ``LABELHUB_COGVIDEOX_PATH`` at ``--out``)."""

from django.core.management.base import BaseCommand, CommandError

from training.alignment.release import GeneratorFolderError
from training.alignment.sat import convert_sat_generator


class Command(BaseCommand):
    help = __doc__.splitlines()[0].removeprefix("manage.py ")

    def add_arguments(self, parser):
        parser.add_argument(
            "checkpoint",
            help="SAT folder with a 'latest' file (e.g. 5B_RL/) or its mp_rank_00_model_states.pt",
        )
        parser.add_argument(
            "--base",
            required=True,
            help="released THUDM/CogVideoX-5b-I2V folder (VAE, T5, tokenizer, scheduler)",
        )
        parser.add_argument("--out", required=True, help="new folder to write")

    def handle(self, *args, checkpoint, base, out, **options):
        try:
            folder = convert_sat_generator(checkpoint, base=base, out=out)
        except (ValueError, GeneratorFolderError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"converted {checkpoint} -> {folder}")
