# The row is every kind of job (scoring, pairs, chunks, rounds, training), so it is named Run.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0004_chunks_and_workers"),
        ("scoring", "0002_alter_rewardmodel_checkpoint_dir"),
        ("training", "0002_alter_policycheckpoint_lora_path"),
    ]

    operations = [
        migrations.RenameModel(old_name="TrainingRun", new_name="Run"),
    ]
