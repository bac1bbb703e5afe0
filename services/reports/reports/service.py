"""nameko entrypoints of the reports service: validate → handler → DTO."""
from nameko.rpc import rpc

from svc_common.consumer import on_event
from svc_common.errors import EXPECTED_ERRORS, Forbidden
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
        self.platform.handle_once(envelope, handlers.project)

    @on_event("tickets", "ticket.completed")
    def on_ticket_completed(self, envelope):
        self.platform.handle_once(envelope, handlers.project)

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def rebuild_read_models(self):
        """Replay the caller's tenant's event archive into fresh read models (admin only)."""
        if self.platform.ctx.actor_role != "admin":
            raise Forbidden("only an admin may rebuild the reports")
        with self.platform.uow() as uow:
            return {"replayed": handlers.rebuild_read_models(uow)}

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
