"""Component invocations are identified by component_run_id alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* ``component_runs`` loses the unique constraint on (run_id, component, attempt)
  (``uq_component_runs_run_id_component_attempt``). In one process ``attempt`` still
  numbers a component's invocations in a run (1, 2, ...), but a run fanned out over
  Celery workers has many invocations of one component that no single process numbers:
  there ``attempt`` is the task's delivery (retries + 1), and the invocation's identity
  is its ``component_run_id`` (the primary key, derived from the task id).
* A plain index ``ix_component_runs_run_id_component`` on (run_id, component) takes over
  the lookups by run the constraint's index served.

Downgrading restores the constraint; it fails (and changes nothing) while two rows share
a (run_id, component, attempt), i.e. after fanned-out runs were recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUPLICATES = sa.text("""
SELECT run_id, component, attempt FROM component_runs
GROUP BY run_id, component, attempt HAVING COUNT(*) > 1 LIMIT 1
""")


def upgrade() -> None:
    with op.batch_alter_table("component_runs") as batch:
        batch.drop_constraint("uq_component_runs_run_id_component_attempt", type_="unique")
        batch.create_index("ix_component_runs_run_id_component", ["run_id", "component"])


def downgrade() -> None:
    duplicate = op.get_bind().execute(_DUPLICATES).first()
    if duplicate is not None:
        raise RuntimeError(
            "cannot downgrade below 0004: run {} component {!r} has several invocations "
            "with attempt {} (a run fanned out over workers)".format(*duplicate))
    with op.batch_alter_table("component_runs") as batch:
        batch.drop_index("ix_component_runs_run_id_component")
        batch.create_unique_constraint("uq_component_runs_run_id_component_attempt",
                                       ["run_id", "component", "attempt"])
