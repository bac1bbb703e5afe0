"""nameko entrypoints of the customers service: validate → handler → DTO."""
from nameko.rpc import rpc

from svc_common.contracts import ServiceSnapshotV1
from svc_common.db import utcnow
from svc_common.errors import EXPECTED_ERRORS
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, page, parse, parse_id, window

from . import handlers
from .models import PLATFORM
from .schemas import CustomerIn, CustomerOut, EquipmentIn, EquipmentOut

class CustomersService(HealthRpc):
    name = "customers"
    platform = Platform(PLATFORM)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def create_customer(self, customer):
        data = parse(CustomerIn, customer)
        with self.platform.uow() as uow:
            return dump(CustomerOut, handlers.create_customer(uow, data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_customer(self, customer_id):
        with self.platform.uow() as uow:
            return dump(CustomerOut, handlers.get_customer(uow, parse_id(customer_id, "customer_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_customers(self, q=None, offset=0, limit=50):
        with self.platform.uow() as uow:
            offset, limit = window(offset, limit)
            rows, total = handlers.list_customers(uow, q, offset, limit)
            return page([dump(CustomerOut, c) for c in rows], total, offset, limit)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def register_equipment(self, customer_id, equipment):
        data = parse(EquipmentIn, equipment)
        with self.platform.uow() as uow:
            return dump(EquipmentOut, handlers.register_equipment(uow, parse_id(customer_id, "customer_id"), data))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_equipment(self, equipment_id):
        with self.platform.uow() as uow:
            return dump(EquipmentOut, handlers.get_equipment(uow, parse_id(equipment_id, "equipment_id")))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def list_equipment(self, customer_id=None):
        with self.platform.uow() as uow:
            rows = handlers.list_equipment(uow, parse_id(customer_id, "customer_id") if customer_id else None)
            return {"items": [dump(EquipmentOut, e) for e in rows], "total": len(rows)}

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_service_snapshot(self, customer_id, equipment_id=None):
        with self.platform.uow() as uow:
            snapshot = handlers.service_snapshot(
                uow, parse_id(customer_id, "customer_id"),
                parse_id(equipment_id, "equipment_id") if equipment_id else None, utcnow().date())
            return ServiceSnapshotV1.model_validate(snapshot).model_dump(mode="json")
