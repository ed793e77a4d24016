"""The local agentbus bus: envelope, endpoints, safe sockets and the client SDK.

Collector and executor scripts need only this package, ``pyzmq`` and ``msgpack``.
"""

from bus.client import Ingest, IngestResult, Publisher, Rejection, make_event
from bus.envelope import Event
from bus.errors import AgentbusError, BusError, BusTimeout, EndpointInUse, InvalidEvent
from bus.executor import Executor
from bus.results import ResultCode

__all__ = [
    "AgentbusError",
    "BusError",
    "BusTimeout",
    "EndpointInUse",
    "Event",
    "Executor",
    "Ingest",
    "IngestResult",
    "InvalidEvent",
    "Publisher",
    "Rejection",
    "ResultCode",
    "make_event",
]
