"""nameko entrypoints of the reports service: validate → handler → DTO."""
from nameko.rpc import rpc

from svc_common.consumer import on_event
from svc_common.errors import EXPECTED_ERRORS
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, parse

from . import handlers
from .models import PLATFORM
from .schemas import DateRangeIn, TechnicianDailyIn, TechnicianDailyOut, WorkOrderSummaryOut


class ReportsService(HealthRpc):
    name = "reports"
    platform = Platform(PLATFORM)

    @on_event("tickets", "ticket.created")
    def on_ticket_created(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.record_ticket_created(
            uow, event, event.payload()))

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        self.platform.handle_once(envelope, lambda uow, event: handlers.record_ticket_completed(
            uow, event, event.payload()))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def technician_daily(self, date_from, date_to, technician_id=None, tz="Asia/Shanghai"):
        query = parse(TechnicianDailyIn, {"date_from": date_from, "date_to": date_to,
                                          "technician_id": technician_id, "tz": tz})
        with self.platform.uow() as uow:
            return dump(TechnicianDailyOut, handlers.technician_daily(uow, query))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def work_order_summary(self, date_from, date_to, tz="Asia/Shanghai"):
        query = parse(DateRangeIn, {"date_from": date_from, "date_to": date_to, "tz": tz})
        with self.platform.uow() as uow:
            return dump(WorkOrderSummaryOut, handlers.work_order_summary(uow, query))
