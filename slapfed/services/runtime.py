"""The runtime the use cases run with: a master's typed settings (MasterSettings), its
database, its one writer (services.tx), its placement state (services.placement) and its
desired-state renderers (native, and SLAP's full computer information). Built once by
whoever runs the use cases (the app factory, a test, a benchmark) and passed to each of
them; nothing here is looked up by database.

Depends on core (provenance, errors), placement (its configuration) and services (tx,
placement, desired).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage

from ..core.errors import InvalidInput
from ..core.leases import DEFAULT_LEASE
from ..core.outbound import ANY as ANY_ADDRESS, OutboundPolicy
from ..core.products import NO_PRODUCTS, Products
from ..core.provenance import DEFAULT_MASTER_NAME, DEFAULT_MAX_DEPTH
from ..placement import DEFAULT as DEFAULT_PIPELINE
from ..placement import PipelineConfig
from . import slap_render
from .desired import DesiredStateRenderer
from .leases import Leases, open_leases
from .placement import PlacementState
from .tx import Writer

DEFAULT_MAX_CONTENT_LENGTH = 4 * 1024 * 1024   # bytes of a request body
DEFAULT_RETRY_MAX = 30.0        # seconds: the longest back-off between two calls to a peer
DEFAULT_POLL_WAIT = 20.0        # seconds a long poll of a peer waits there
DEFAULT_USAGE_PULL = 60.0       # seconds between two pulls of a peer's usage feed
MAX_LONG_POLL = 60.0            # seconds a long poll here may wait (GET /federation/changes)
DEFAULT_SYNC_TIMEOUT = 5.0      # seconds a write waits for a sync replica, then degrades


def _sync_timeout(value) -> float:
    if value is None:
        return DEFAULT_SYNC_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise InvalidInput(f"invalid sync timeout {value!r}: a number of seconds in (0, 3600]",
                           [{"field": "sync_timeout",
                             "problem": "must be a number of seconds in (0, 3600]"}])
    return seconds


def _lease(value) -> float:
    if value is None:
        return DEFAULT_LEASE
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 1e9:
        raise InvalidInput(f"invalid lease {value!r}: a number of seconds > 0",
                           [{"field": "lease", "problem": "must be a number of seconds > 0"}])
    return seconds


def _rebuild_after(value) -> float:
    """Seconds a computer's lease must have been out before the master declares it lost
    by itself; 0 (the default): never, only an administrator's verdict does."""
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < 1e9:
        raise InvalidInput(f"invalid rebuild_after {value!r}: a number of seconds >= 0 "
                           "(0: off)", [{"field": "rebuild_after",
                                         "problem": "must be a number of seconds >= 0"}])
    return seconds


def _long_poll_max(value) -> float:
    if value is None:
        return MAX_LONG_POLL
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= MAX_LONG_POLL:
        raise InvalidInput(f"invalid long poll limit {value!r}: a number of seconds in "
                           f"0..{MAX_LONG_POLL:g}",
                           [{"field": "long_poll_max",
                             "problem": f"must be a number of seconds in 0..{MAX_LONG_POLL:g}"}])
    return seconds


@dataclass(frozen=True)
class MasterSettings:
    """What a master is configured with, typed and checked once (``from_config``)."""

    name: str | None = None             # this master's name (None: not named, see ``here``)
    data_dir: str | None = None         # its data directory (CA, peers' credentials, lock)
    storage: str | None = None          # storage URI (store.open_db); None: <data>/master.fs
    ca_dir: str | None = None           # its CA (default <data>/ca)
    insecure: bool = False              # development mode: every caller is admin/local
    topology_files: tuple = ()          # topology files, and this master in them (``name``)
    placement: PipelineConfig = field(default=DEFAULT_PIPELINE)
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    max_depth: int = DEFAULT_MAX_DEPTH  # longest chain of masters a request may cross
    ancestry: tuple = ()                # the masters above this one, root first
    peer_retry_max: float = DEFAULT_RETRY_MAX
    forwarder: bool = False             # run the forwarder in this process
    peer_poll_wait: float = DEFAULT_POLL_WAIT
    access_log: bool = True             # one line per request (master.access)
    lease: float = DEFAULT_LEASE        # seconds a computer stays live without a poll
    rebuild_after: float = 0.0          # lease out this long: declared lost (0: never)
    outbound: OutboundPolicy = ANY_ADDRESS  # addresses it may call for peers (core.outbound)
    long_poll_max: float = MAX_LONG_POLL    # longest a long poll here waits (seconds)
    replication: bool = False           # run the replica's follower / the fence watcher here
    sync_timeout: float = DEFAULT_SYNC_TIMEOUT   # seconds a write waits for a sync replica
    peer_usage_interval: float = DEFAULT_USAGE_PULL  # pull each peer's usage feed (0: never)
    products: Products = NO_PRODUCTS    # SlapOS' product aliases (core.products)

    @property
    def here(self) -> str:
        """This master's name as the federation, SLAs and provenance know it."""
        return self.name or DEFAULT_MASTER_NAME

    # config key of create_app -> (field, how a given value becomes the field's)
    CONFIG_KEYS = MappingProxyType({
        "MASTER_NAME": ("name", lambda v: v or None),
        "DATA_DIR": ("data_dir", lambda v: v or None),
        "STORAGE": ("storage", lambda v: v or None),
        "CA_DIR": ("ca_dir", lambda v: v or None),
        "INSECURE": ("insecure", bool),
        "TOPOLOGY_FILES": ("topology_files", lambda v: tuple(v or ())),
        "PLACEMENT": ("placement", PipelineConfig.from_json),
        "MAX_CONTENT_LENGTH": ("max_content_length",
                               lambda v: DEFAULT_MAX_CONTENT_LENGTH if v is None else int(v)),
        "MAX_DEPTH": ("max_depth", lambda v: v or DEFAULT_MAX_DEPTH),
        "ANCESTRY": ("ancestry", lambda v: tuple(v or ())),
        "PEER_RETRY_MAX": ("peer_retry_max", lambda v: float(v) if v else DEFAULT_RETRY_MAX),
        "FORWARDER": ("forwarder", bool),
        "PEER_POLL_WAIT": ("peer_poll_wait", lambda v: float(v) if v else DEFAULT_POLL_WAIT),
        "ACCESS_LOG": ("access_log", bool),
        "LEASE": ("lease", _lease),
        "REBUILD_AFTER": ("rebuild_after", _rebuild_after),
        "OUTBOUND_ALLOW": ("outbound", OutboundPolicy.parse),
        "LONG_POLL_MAX": ("long_poll_max", _long_poll_max),
        "REPLICATION": ("replication", bool),
        "SYNC_TIMEOUT": ("sync_timeout", _sync_timeout),
        "PEER_USAGE_INTERVAL": ("peer_usage_interval",
                                lambda v: DEFAULT_USAGE_PULL if v is None else float(v)),
        "PRODUCTS": ("products", Products.parse),
    })

    @classmethod
    def from_config(cls, config: dict) -> "MasterSettings":
        """The settings a create_app config dict gives (keys of CONFIG_KEYS; others are
        not settings). Raises InvalidInput (the placement settings)."""
        values = {}
        for key, (name, convert) in cls.CONFIG_KEYS.items():
            if key in config:
                values[name] = convert(config[key])
        return cls(**values)


class Runtime:
    """What the use cases of one master run with, in this process: its ``settings``, its
    ``db``, the ``writer`` every write use case runs on (services.tx.Writer), the
    ``placement`` state of that writer (snapshot and pipeline), the ``renderer`` of
    desired-state documents and the ``leases`` of its computers (services.leases: files
    under ``<data>/leases``, in memory without a data directory; ``leases`` given
    replaces them). ``close`` releases them (not the DB: its opener closes it)."""

    def __init__(self, db, settings: MasterSettings | None = None,
                 leases: Leases | None = None):
        self.db = db
        self.settings = settings if settings is not None else MasterSettings()
        self.leases = leases if leases is not None else open_leases(
            self.settings.data_dir, self.settings.lease)
        self.writer = Writer(db)
        self.placement = PlacementState(self.settings.placement, self.settings.here,
                                        self.leases)
        # One process owns a FileStorage: its writer's cache holds every object written,
        # so documents are rendered there, without loading what the writes changed.
        # Under ZEO other processes write too, and a renderer keeps its own connection
        # rather than hold the writer while it loads their changes.
        read = (self.writer.read if isinstance(db.storage, (FileStorage, MappingStorage))
                else None)
        self.renderer = DesiredStateRenderer(db, read=read)
        self.slap_renderer = DesiredStateRenderer(db, slap_render.partition_fragment,
                                                  slap_render.computer_document, read=read)

    def close(self) -> None:
        self.renderer.close()
        self.slap_renderer.close()
        self.writer.close()
