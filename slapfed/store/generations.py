"""Schema generations: the ordered evolve steps and the code that applies them.

Depends on model and transaction. Each step is small, takes the ZODB root mapping,
never commits; ``evolve`` runs every missing step inside ONE transaction and records
the reached generation on the App root.
"""
from __future__ import annotations

import transaction
from ZODB.POSException import ConflictError

from ..core.errors import StorageError
from ..model import ROOT_KEY, App


def evolve1(root) -> None:
    """Create the App root and its containers."""
    app = root.get(ROOT_KEY)
    if app is None:
        app = root[ROOT_KEY] = App()
    app.create_containers()


def evolve2(root) -> None:
    """Placement indexes: the supply index (release -> computers) and the counter of
    placement-relevant changes that keeps in-memory placement snapshots honest."""
    root[ROOT_KEY].create_containers()


def evolve3(root) -> None:
    """Record on every instance the requester of its tree's root (its owner), so that
    authorization reads one attribute instead of walking parents."""
    instances = root[ROOT_KEY].instances
    for inst in instances.values():
        if inst.root_requester is not None:
            continue
        seen, top = set(), inst
        while top.parent is not None and top.parent in instances and top.id not in seen:
            seen.add(top.id)
            top = instances[top.parent]
        inst.root_requester = top.requester


def evolve4(root) -> None:
    """Federation: the peers and the forward table (with its open set and index)."""
    root[ROOT_KEY].create_containers()


def evolve5(root) -> None:
    """Shared hosting by consent: the index of shared instances waiting for a host
    (filled from the instances already stored), so that a host opened to their owner
    attaches them. Hosts stored before keep the class default: open to their owner only."""
    root[ROOT_KEY].create_containers()


def evolve6(root) -> None:
    """Accounting: the usage ledger (empty: usage is recorded from now on)."""
    root[ROOT_KEY].create_containers()


# Index i holds the step reaching generation i + 1. Append, never reorder.
EVOLVE_STEPS = (evolve1, evolve2, evolve3, evolve4, evolve5, evolve6)
LATEST_GENERATION = len(EVOLVE_STEPS)


def current_generation(root) -> int:
    app = root.get(ROOT_KEY)
    return 0 if app is None else app.generation


def evolve(db, attempts: int = 10) -> list[str]:
    """Bring the storage of ``db`` to LATEST_GENERATION; returns the names of the steps run.

    Raises StorageError when the storage was written by newer code."""
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    try:
        for attempt in range(attempts):
            tm.begin()
            try:
                root = conn.root()
                start = current_generation(root)
                if start > LATEST_GENERATION:
                    raise StorageError(
                        f"the storage is at schema generation {start}, newer than this "
                        f"code knows ({LATEST_GENERATION}); upgrade slapfed")
                ran = []
                for number in range(start + 1, LATEST_GENERATION + 1):
                    step = EVOLVE_STEPS[number - 1]
                    step(root)
                    ran.append(step.__name__)
                if ran:
                    root[ROOT_KEY].generation = LATEST_GENERATION
                    tm.get().note(f"slapfed: evolve to generation {LATEST_GENERATION}")
                    tm.commit()
                else:
                    tm.abort()
                return ran
            except ConflictError:
                tm.abort()
                if attempt == attempts - 1:
                    raise StorageError("could not evolve the storage: it kept conflicting "
                                       f"with other writers ({attempts} attempts)") from None
            except BaseException:
                tm.abort()
                raise
    finally:
        conn.close()
