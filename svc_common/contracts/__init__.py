"""Event envelope and versioned payload contracts, shared by producers and consumers.

A producer validates `data` against the contract before it reaches the outbox; a
consumer parses it with the same model. A breaking change is a new schema_version.
Each producing service has its own module here (accounts = the gateway); this package
merges their registries. `python -m svc_common.catalog` turns the registry into the
published event catalog.
"""
from svc_common.contracts import accounts, customers, inventory, notify, service_desk, tickets
from svc_common.contracts.accounts import *  # noqa: F401,F403
from svc_common.contracts.base import Actor, Contract, EventEnvelope  # noqa: F401
from svc_common.contracts.customers import *  # noqa: F401,F403
from svc_common.contracts.inventory import *  # noqa: F401,F403
from svc_common.contracts.notify import *  # noqa: F401,F403
from svc_common.contracts.service_desk import *  # noqa: F401,F403
from svc_common.contracts.tickets import *  # noqa: F401,F403

_MODULES = (accounts, customers, tickets, service_desk, inventory, notify)

# type → (producing service, {version: contract})
EVENTS: dict[str, tuple[str, dict[int, type[Contract]]]] = {}
for _module in _MODULES:
    for _type, _versions in _module.EVENTS.items():
        if _type in EVENTS:
            raise RuntimeError(f"event type {_type} is declared twice")
        EVENTS[_type] = (_module.PRODUCER, _versions)


def contract_for(event_type: str, version: int = 1) -> type[Contract]:
    try:
        return EVENTS[event_type][1][version]
    except KeyError:
        raise KeyError(f"no contract for {event_type} v{version}") from None


def producer_of(event_type: str) -> str:
    return EVENTS[event_type][0]


def exchange_of(event_type: str) -> str:
    return f"{producer_of(event_type)}.events"
