"""A class on one PostgreSQL database: a role per student, row-level security, a teachers group.

``setup(admin_url, students, teachers)`` creates a login role per person (a member of
``chatkit_lab_students`` or ``chatkit_lab_teachers``) and row-level security policies on every
table, so the database itself keeps each student to their own rows: the chat, the frames,
``lab.sql`` and any other client connecting as that role alike. Teachers read and write across
users. The admin role that owns the tables (and runs ``serve``, which scopes by token) bypasses
the policies, as owners do. Running it again adds people and covers tables a newer version added.
``PostgresDatabase.membership()`` tells a lab whether its role is a student or a teacher.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError
from .postgres_database import STUDENTS, TEACHERS, unavailable
from .postgres_schema import migrate_sync

OWN = "user_id = current_user"
# The rows of each table a student may see: their own, or those under a parent row they may see
# (the subqueries are filtered by the parents' own policies).
READ: dict[str, str] = {
    "threads": OWN, "items": OWN, "attachments": OWN, "feedback": OWN, "turns": OWN, "traces": OWN, "model_inputs": OWN,
    "guardrail_results": OWN, "workflow_nodes": OWN, "workflow_runs": OWN, "tool_approvals": OWN, "eval_runs": OWN, "eval_rounds": OWN,
    "spans": "trace_id IN (SELECT trace_id FROM traces)",
    "lineage": "thread_id IN (SELECT thread_id FROM threads)", "origins": "thread_id IN (SELECT thread_id FROM threads)",
    "eval_items": "run_id IN (SELECT run_id FROM eval_runs)", "eval_results": "run_id IN (SELECT run_id FROM eval_runs)",
    "eval_datasets": "dataset_hash IN (SELECT dataset_hash FROM eval_runs)",
    "eval_dataset_items": "dataset_hash IN (SELECT dataset_hash FROM eval_runs)",
    "input_items": ("hash IN (SELECT unnest(input_hashes) FROM model_inputs) OR "
                    "hash IN (SELECT jsonb_array_elements_text(data::jsonb -> 'input_hashes') FROM spans)"),
    # The class's own: course documents and published workflows everyone uses.
    "documents": "true", "document_chunks": "true",
    "workflow_definitions": "true", "workflow_versions": "true", "workflow_defaults": "true",
    "rate_hits": "false",  # the servers', counted as the owner
}
# What a student may write, where it is not "what they may read": shared content by hash is
# written by whoever meets it first; publishing a workflow and course documents are the teachers'.
WRITE: dict[str, str] = {
    "spans": "true", "input_items": "true", "eval_datasets": "true", "eval_dataset_items": "true",
    "eval_items": "true", "eval_results": "true", "lineage": "true", "origins": "true",
    "documents": "false", "document_chunks": "false", "workflow_versions": "false", "workflow_defaults": "false",
}


@dataclass(frozen=True)
class Member:
    """One person of the class: their role (also their user id in the lab) and URL."""

    name: str
    teacher: bool
    url: str


def setup(admin_url: str, students: Sequence[str] = (), teachers: Sequence[str] = ()) -> list[Member]:
    """Migrate the database, create (or update) a role per student and teacher with a new
    password, and put every table under row-level security. Returns each person's URL."""
    import psycopg
    from psycopg import sql

    people = [(n, False) for n in students] + [(n, True) for n in teachers]
    for name, _ in people:
        if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ConfigurationError(f"{name!r} cannot be a role name: use letters, digits, '-', '_' or '.'.")
    try:
        con = psycopg.connect(admin_url, autocommit=True)
    except (psycopg.Error, OSError) as exc:
        raise unavailable(admin_url, exc) from None
    members = []
    with con:
        migrate_sync(con)
        with con.transaction():
            for group in (STUDENTS, TEACHERS):
                if con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [group]).fetchone() is None:
                    con.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            dbname = con.info.dbname
            for group in (STUDENTS, TEACHERS):
                con.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(group)))
                con.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(group)))
                con.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(group)))
                con.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE ON _migrations FROM {}").format(sql.Identifier(group)))
                con.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(group)))
            tables = {t for (t,) in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_migrations'")}
            unknown = tables - READ.keys()
            if unknown:
                raise ConfigurationError(f"No row policy is known for {', '.join(sorted(unknown))}; upgrade chatkit-lab before running the workshop setup.")
            for table in sorted(tables):
                con.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier(table)))
                for policy in ("teachers", "students_read", "students_write", "students_update", "students_delete"):
                    con.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy), sql.Identifier(table)))
                read, write = READ[table], WRITE.get(table, READ[table])
                con.execute(sql.SQL("CREATE POLICY teachers ON {} TO {} USING (true) WITH CHECK (true)").format(
                    sql.Identifier(table), sql.Identifier(TEACHERS)))
                con.execute(sql.SQL("CREATE POLICY students_read ON {} FOR SELECT TO {} USING (" + read + ")").format(
                    sql.Identifier(table), sql.Identifier(STUDENTS)))
                con.execute(sql.SQL("CREATE POLICY students_write ON {} FOR INSERT TO {} WITH CHECK (" + write + ")").format(
                    sql.Identifier(table), sql.Identifier(STUDENTS)))
                mine = "false" if write == "false" else read
                con.execute(sql.SQL("CREATE POLICY students_update ON {} FOR UPDATE TO {} USING (" + mine + ") WITH CHECK (" + mine + ")").format(
                    sql.Identifier(table), sql.Identifier(STUDENTS)))
                con.execute(sql.SQL("CREATE POLICY students_delete ON {} FOR DELETE TO {} USING (" + mine + ")").format(
                    sql.Identifier(table), sql.Identifier(STUDENTS)))
            host, port = con.info.host, con.info.port
            for name, teacher in people:
                password = secrets.token_urlsafe(18)
                role = sql.Identifier(name)
                if con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is None:
                    con.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))
                else:
                    con.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))
                joins, leaves = (TEACHERS, STUDENTS) if teacher else (STUDENTS, TEACHERS)
                con.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(joins), role))
                con.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(leaves), role))
                members.append(Member(name, teacher, f"postgresql://{name}:{password}@{host}:{port}/{dbname}"))
    return members
