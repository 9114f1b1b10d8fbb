"""Workflows in the database: graphs by content hash, published versions, defaults, paused runs.

Publishing stores an immutable, numbered version (the same graph published twice is one
version); a draft is any graph not published. ``name@3`` names a version, ``name`` the default
(the newest published unless rolled back). A run paused at an approval is a row a click resumes,
once: taking it is one UPDATE that only a paused row matches.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import ChatLabError, NotFoundError
from ..store.items import utc_now
from .graph import Workflow

# Upserts as ON CONFLICT, which DuckDB and PostgreSQL both speak.
SET_DEFAULT = "INSERT INTO workflow_defaults VALUES (?, ?) ON CONFLICT (workflow_name) DO UPDATE SET version = excluded.version"
_REFERENCE = re.compile(r"^(?P<name>[^@]+?)(?:@(?P<version>\d+|latest|default|draft))?$")


@dataclass(frozen=True)
class Resolved:
    """A workflow and which version it is (None: a draft)."""

    workflow: Workflow
    version: int | None
    workflow_hash: str

    @property
    def label(self) -> str:
        return f"{self.workflow.name}@{self.version if self.version is not None else 'draft'}"


def remember(cur: Any, wf: Workflow) -> str:
    """Store the graph under its content hash (once); return the hash."""
    digest = wf.content_hash()
    cur.execute(
        "INSERT INTO workflow_definitions (workflow_hash, workflow_name, definition, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [digest, wf.name, wf.to_json(), utc_now()],
    )
    return digest


def publish(cur: Any, wf: Workflow, note: str | None = None) -> int:
    """A new numbered version of ``wf.name`` that becomes the default; the same graph as the
    newest version publishes nothing new and returns that version."""
    digest = remember(cur, wf)
    newest = cur.execute(
        "SELECT version, workflow_hash FROM workflow_versions WHERE workflow_name = ? ORDER BY version DESC LIMIT 1", [wf.name]
    ).fetchone()
    if newest is not None and newest[1] == digest:
        version = int(newest[0])
    else:
        version = (int(newest[0]) if newest else 0) + 1
        cur.execute("INSERT INTO workflow_versions VALUES (?, ?, ?, ?, ?)", [wf.name, version, digest, note, utc_now()])
    cur.execute(SET_DEFAULT, [wf.name, version])
    return version


def rollback(cur: Any, name: str, version: int) -> None:
    """Make ``version`` of ``name`` the default again."""
    _version_hash(cur, name, version)
    cur.execute(SET_DEFAULT, [name, version])


def resolve(cur: Any, reference: str) -> Resolved:
    """``name``, ``name@3``, ``name@latest`` (the newest published) or ``name@default``."""
    m = _REFERENCE.match(reference.strip())
    if m is None:
        raise ChatLabError(f"{reference!r} does not name a workflow; write 'name' or 'name@3'.")
    name, which = m.group("name"), m.group("version") or "default"
    if which == "draft":
        raise ChatLabError(f"{reference!r}: drafts are not stored by name; pass the Workflow itself.")
    if which == "latest":
        row = cur.execute("SELECT max(version) FROM workflow_versions WHERE workflow_name = ?", [name]).fetchone()
        version = row[0] if row else None
    elif which == "default":
        row = cur.execute("SELECT version FROM workflow_defaults WHERE workflow_name = ?", [name]).fetchone()
        version = row[0] if row else None
    else:
        version = int(which)
    if version is None:
        names = [r[0] for r in cur.execute("SELECT DISTINCT workflow_name FROM workflow_versions ORDER BY 1").fetchall()]
        raise NotFoundError(f"No published workflow {name!r} (published: {', '.join(names) or 'none'}); publish one with lab.publish(wf).")
    digest = _version_hash(cur, name, int(version))
    return Resolved(load(cur, digest), int(version), digest)


def load(cur: Any, digest: str) -> Workflow:
    row = cur.execute("SELECT definition FROM workflow_definitions WHERE workflow_hash = ?", [digest]).fetchone()
    if row is None:
        raise NotFoundError(f"No stored workflow with hash {digest[:12]}….")
    return Workflow.model_validate_json(row[0])


def _version_hash(cur: Any, name: str, version: int) -> str:
    row = cur.execute("SELECT workflow_hash FROM workflow_versions WHERE workflow_name = ? AND version = ?", [name, version]).fetchone()
    if row is None:
        known = [r[0] for r in cur.execute("SELECT version FROM workflow_versions WHERE workflow_name = ? ORDER BY 1", [name]).fetchall()]
        raise NotFoundError(f"Workflow {name!r} has no version {version} (its versions: {', '.join(map(str, known)) or 'none'}).")
    return str(row[0])


VERSIONS_SQL = """
    SELECT v.workflow_name, v.version, v.version = d.version AS is_default, v.workflow_hash, v.note, v.published_at,
           json_array_length(w.definition -> 'nodes') AS nodes
    FROM workflow_versions v JOIN workflow_definitions w ON w.workflow_hash = v.workflow_hash
    LEFT JOIN workflow_defaults d ON d.workflow_name = v.workflow_name
    WHERE ?::VARCHAR IS NULL OR v.workflow_name = ?
    ORDER BY v.workflow_name, v.version"""


# -- paused runs -------------------------------------------------------------------------------
# The newest run of a thread waiting for this user, and the approval card that asks (its item).
PENDING_SQL = """
    SELECT r.run_id, i.item_id FROM workflow_runs r
    JOIN items i ON i.thread_id = r.thread_id AND i.type = 'widget' AND strpos(i.data::VARCHAR, r.run_id) > 0
    WHERE r.thread_id = ? AND r.user_id = ? AND r.status = 'paused'
    ORDER BY r.created_at DESC LIMIT 1"""

def save_paused(cur: Any, *, thread_id: str, user_id: str, turn_id: str, workflow_hash: str, version: int | None, node_id: str,
                paused: str) -> str:
    run_id = f"wfrun_{uuid.uuid4().hex}"
    cur.execute(
        "INSERT INTO workflow_runs (run_id, thread_id, user_id, turn_id, workflow_hash, workflow_version, node_id, status, paused, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'paused', ?, ?)",
        [run_id, thread_id, user_id, turn_id, workflow_hash, version, node_id, paused, utc_now()],
    )
    return run_id


@dataclass(frozen=True)
class PausedRun:
    run_id: str
    thread_id: str
    turn_id: str
    workflow_hash: str
    version: int | None
    node_id: str
    paused: str


def take_paused(cur: Any, run_id: str, user_id: str, thread_id: str, decision: str) -> PausedRun | None:
    """Mark the paused run decided and return it; None when it is not this user's paused run
    (unknown, another user's, or decided already: a second click resumes nothing)."""
    row = cur.execute(
        "UPDATE workflow_runs SET status = 'decided', decision = ?, decided_at = ? "
        "WHERE run_id = ? AND user_id = ? AND thread_id = ? AND status = 'paused' "
        "RETURNING run_id, thread_id, turn_id, workflow_hash, workflow_version, node_id, paused::VARCHAR",
        [decision, utc_now(), run_id, user_id, thread_id],
    ).fetchone()
    return PausedRun(*row) if row else None

