"""The indexer's side of the stateful endpoint: which items it stores, and how.

Each create/update item is first checked against its index's mapping
(:func:`bus.indices.check_document`; the state indices are ``dynamic: strict``), then
applied with the indexer's own semantics (docs/protocol.md, Events), not as an upsert:

- ``create`` of a document that exists fails the item with 409
  ``version_conflict_engine_exception`` and leaves the document as it was;
- ``update`` is a partial update (``{"doc": data}``): the data is merged recursively into
  the stored document (objects merged, anything else replaced, a ``null`` sets the field to
  null); an update that changes nothing is a ``noop``; an update of a missing document
  fails with 404 ``document_missing_exception``;
- ``delete`` of a missing document fails with 404 ``not_found``.

Items are decided in order, each seeing what the ones before it did. ``upsert`` restores
the old lenient behaviour (create and update both create or replace) for experiments;
``strict=False`` skips the mapping check. Command results (module ``command``) are not
applied here: the store records them against the commands it owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from bus.indices import Problem, check_document, index_name, index_to_check

#: (index name, document id)
Key = tuple[str, str]


class StatefulRow(NamedTuple):
    """One parsed stateful event, ready to store (a tuple: cheap to build per event)."""

    header: str  # the header line as received
    data: str | None  # the data line as received (None for delete)
    value: dict[str, Any] | None  # the data line parsed
    doc_id: str
    module: str
    collector: str | None
    operation: str
    result: dict[str, Any] | None  # command results: {"code": c, "message": m}


CONFLICT = "version_conflict_engine_exception"
MISSING = "document_missing_exception"


@dataclass
class Applied:
    """What a request's items did: one result each, and the documents' new states."""

    #: one per row, in order; ``{}`` for a command result the store still has to record
    results: list[dict[str, Any]] = field(default_factory=list)
    #: refused by the mapping check: neither stored nor recorded as a received event
    refused: list[bool] = field(default_factory=list)
    #: the final text of every document the request changed; None when it was deleted
    changes: dict[Key, str | None] = field(default_factory=dict)


def key_of(row: StatefulRow) -> Key:
    return index_name(row.module, row.collector), row.doc_id


def item(index: str, doc_id: str, result: str, status: int) -> dict[str, Any]:
    return {"index": index, "id": doc_id, "result": result, "status": status}


def problem_of(row: StatefulRow) -> Problem | None:
    """Why the indexer would refuse this create/update item's document, if it would."""
    if row.operation == "delete" or row.value is None:
        return None
    return check_document(index_to_check(row.module, row.collector), row.value)


def apply(
    rows: Sequence[StatefulRow],
    current: dict[Key, str],
    *,
    strict: bool = True,
    upsert: bool = False,
) -> Applied:
    """Decide every item in order against ``current`` (stored text of existing documents,
    for the keys of ``rows``), which is updated in place."""
    out = Applied()
    for row in rows:
        index, doc_id = key = key_of(row)
        problem = problem_of(row) if strict else None
        out.refused.append(problem is not None)
        if problem is not None:
            out.results.append(item(index, doc_id, str(problem), 400))
        elif row.module == "command":
            out.results.append({})
        elif row.operation == "delete":
            found = current.pop(key, None) is not None
            if found:
                out.changes[key] = None
            out.results.append(
                item(index, doc_id, "deleted" if found else "not_found", 200 if found else 404)
            )
        elif upsert:
            created = key not in current
            current[key] = out.changes[key] = row.data or "{}"
            out.results.append(
                item(index, doc_id, "created" if created else "updated", 201 if created else 200)
            )
        elif row.operation == "create":
            out.results.append(_create(current, key, row, out.changes))
        else:
            out.results.append(_update(current, key, row, out.changes))
    return out


def _create(
    current: dict[Key, str], key: Key, row: StatefulRow, changes: dict[Key, str | None]
) -> dict[str, Any]:
    index, doc_id = key
    if key in current:
        reason = f"[{doc_id}]: version conflict, document already exists"
        return item(index, doc_id, f"{CONFLICT}: {reason}", 409)
    current[key] = changes[key] = row.data or "{}"
    return item(index, doc_id, "created", 201)


def _update(
    current: dict[Key, str], key: Key, row: StatefulRow, changes: dict[Key, str | None]
) -> dict[str, Any]:
    index, doc_id = key
    stored = current.get(key)
    if stored is None:
        return item(index, doc_id, f"{MISSING}: [{doc_id}]: document missing", 404)
    before = orjson.loads(stored)
    after = merge(before, row.value or {})
    if after == before:
        return item(index, doc_id, "noop", 200)  # the indexer's detect_noop
    current[key] = changes[key] = orjson.dumps(after).decode()
    return item(index, doc_id, "updated", 200)


def merge(stored: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A partial update as the indexer applies ``{"doc": update}``: objects merge
    recursively, any other value (a list, a null) replaces the stored one."""
    merged = dict(stored)
    for name, value in update.items():
        old = merged.get(name)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[name] = merge(old, value)
        else:
            merged[name] = value
    return merged
