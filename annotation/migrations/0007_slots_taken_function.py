"""``annotation_clip_slots_taken(clip, at)`` and ``annotation_pairwise_slots_taken(task, at)``: the
active leases of a clip / pairwise task, counted with a fresh snapshot.

The lease queue locks a candidate clip and leases it in one statement (no transaction round
trips on the hot path). Inside one statement every subquery reads the statement's snapshot,
taken before the row lock was granted, so it can miss a lease committed by the transaction that
held the lock just before. A VOLATILE PL/pgSQL function takes a new snapshot for each query it
runs (READ COMMITTED), so called on a row already locked it sees every lease committed before
the lock was granted; leases are only created under that lock, so the count is exact.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION annotation_clip_slots_taken(clip bigint, at timestamptz)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT count(*) FILTER (WHERE expires_at > at) FROM annotation_lease
            WHERE clip_id = clip);
END
$$;
CREATE OR REPLACE FUNCTION annotation_pairwise_slots_taken(task bigint, at timestamptz)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT count(*) FILTER (WHERE expires_at > at) FROM annotation_pairwiselease
            WHERE task_id = task);
END
$$;
"""
DROP = """
DROP FUNCTION IF EXISTS annotation_clip_slots_taken(bigint, timestamptz);
DROP FUNCTION IF EXISTS annotation_pairwise_slots_taken(bigint, timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [("annotation", "0006_queue_order_and_team")]

    operations = [migrations.RunSQL(CREATE, DROP)]
