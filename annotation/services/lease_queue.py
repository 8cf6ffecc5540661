"""The lease queue shared by clip rating and pairwise judging.

A queue item (a clip, a pairwise task) needs a number of people; a person holds an item through
a lease that expires, and items are only leased or finished while their row is locked. Handing
out the next item is one statement, ``take``, repeated until it succeeds:

- a CTE locks a batch of open items in queue order with ``FOR UPDATE SKIP LOCKED``, so
  concurrent callers never wait on each other: each skips the rows another holds;
- the first locked item whose finished work plus active leases is below its need is leased
  (``INSERT ... SELECT``). The lease count is taken by a VOLATILE database function
  (``annotation_clip_slots_taken`` / ``annotation_pairwise_slots_taken``, migration 0007),
  which reads with a fresh snapshot once the row is locked: a subquery would read the
  statement's snapshot, older than the lock, and could miss a lease just committed by the
  transaction that held it;
- it returns the ids it locked and the lease, if any.

One statement means no transaction round trips on the hot path (autocommit). When every locked
item was full, the next attempt looks further down the queue. When none could be locked only
because other transactions hold them for a moment (a submit or a lease in flight), the caller
waits briefly and retries; it answers "nothing left" only when ``any_open`` says no open item
exists even counting locked ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

# Rows looked at per attempt; a candidate can turn out full once its lock is held.
CANDIDATE_BATCH = 8
# When every open item is locked by someone else's in-flight transaction, wait briefly and retry.
BUSY_RETRIES = 200
BUSY_RETRY_SECONDS = 0.01

LeaseT = TypeVar("LeaseT")


def claim_next(
    *,
    take: Callable[[list[int]], tuple[list[int], LeaseT | None]],
    any_open: Callable[[list[int]], bool],
    exclude: list[int] | tuple = (),
) -> LeaseT | None:
    """Lease the first open item, skipping ids in ``exclude``; None when none is left.

    ``take(exclude)`` locks a batch and leases the first with room, atomically (one statement,
    or inside the caller's transaction), returning ``(locked ids, lease or None)``.
    """
    exclude = list(exclude)
    busy_retries = 0
    while True:
        locked, lease = take(exclude)
        if lease is not None:
            return lease
        if locked:
            exclude.extend(locked)  # all full once counted under the lock: look further down
            continue
        if busy_retries >= BUSY_RETRIES or not any_open(exclude):
            return None
        busy_retries += 1
        time.sleep(BUSY_RETRY_SECONDS)
