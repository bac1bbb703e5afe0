"""nameko entrypoints of the reports service: validate → handler → DTO."""
import base64

from nameko.rpc import rpc

from svc_common.consumer import on_event
from svc_common.errors import EXPECTED_ERRORS, Forbidden, field_error
from svc_common.nameko_deps import HealthRpc, Platform
from svc_common.validation import dump, parse

from . import handlers
from .models import PLATFORM
from .schemas import (
    REPORT_NAMES,
    ChartOut,
    DashboardIn,
    DashboardOut,
    DateRangeIn,
    ExportOut,
    ReportOut,
    ReportQuery,
    ReportSettingsIn,
    ReportSettingsOut,
    TechnicianDailyIn,
    TechnicianDailyOut,
    WorkOrderSummaryOut,
)

EXPORT_FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  "csv": "text/csv; charset=utf-8"}
SETTINGS_ROLES = ("admin",)


class ReportsService(HealthRpc):
    name = "reports"
    platform = Platform(PLATFORM)

    def _consume(self, envelope):
        self.platform.handle_once(envelope, handlers.consume)

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

    # -- the reports of 运营分析 ---------------------------------------------------------------

    def _query(self, report, query) -> ReportQuery:
        if report not in REPORT_NAMES:
            raise field_error("report", f"unknown report; one of {', '.join(REPORT_NAMES)}")
        parsed = parse(ReportQuery, query)
        ctx = self.platform.ctx
        if ctx.actor_role == "technician":  # a technician sees their own figures only (移动端统计)
            parsed = parsed.model_copy(update={"technician_id": ctx.actor_id})
        return parsed

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def run_report(self, report, query=None):
        """One report (see REPORT_NAMES), its rows paged by offset/limit."""
        parsed = self._query(report, query)
        with self.platform.uow() as uow:
            return dump(ReportOut, handlers.run_report(uow, report, parsed, paged=True))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def export_report(self, report, query=None, format="xlsx"):
        """Every row of a report as an XLSX or CSV file (base64 over RPC)."""
        if format not in EXPORT_FORMATS:
            raise field_error("format", "must be xlsx or csv")
        parsed = self._query(report, query)
        with self.platform.uow() as uow:
            content = handlers.export_report(uow, report, parsed, format, self.platform.ctx.locale)
        return dump(ExportOut, {
            "filename": f"{report}_{parsed.date_from}_{parsed.date_to}.{format}",
            "content_type": EXPORT_FORMATS[format], "content_base64": base64.b64encode(content).decode()})

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def report_chart(self, report, query=None):
        """The report's trend per period as an SVG line chart (performance: scores as bars)."""
        parsed = self._query(report, query)
        with self.platform.uow() as uow:
            svg = handlers.report_chart(uow, report, parsed, self.platform.ctx.locale)
        return dump(ChartOut, {"filename": f"{report}_{parsed.date_from}_{parsed.date_to}.svg", "svg": svg})

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def dashboard(self, query=None):
        """Managers' summary: today and this month, and the open orders by status right now."""
        parsed = parse(DashboardIn, query)
        ctx = self.platform.ctx
        if ctx.actor_role == "technician":
            parsed = parsed.model_copy(update={"technician_id": ctx.actor_id})
        with self.platform.uow() as uow:
            return dump(DashboardOut, handlers.dashboard(uow, parsed))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def get_report_settings(self):
        with self.platform.uow() as uow:
            return dump(ReportSettingsOut, handlers.report_settings(uow))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def update_report_settings(self, settings):
        """The tenant's time zone for reports and its performance rule weights (admin only)."""
        if self.platform.ctx.actor_role not in SETTINGS_ROLES:
            raise Forbidden("only an admin may change the report settings")
        parsed = parse(ReportSettingsIn, settings)
        with self.platform.uow() as uow:
            return dump(ReportSettingsOut, handlers.update_report_settings(uow, parsed))


def _subscribe(producer: str, event_type: str):
    @on_event(producer, event_type)
    def handler(self, envelope):
        self._consume(envelope)
    handler.__name__ = "on_" + event_type.replace(".", "_")
    return handler


# One handler (and so one durable queue) per event type the read models are built from.
for _producer, _event_type in handlers.SUBSCRIPTIONS:
    _method = _subscribe(_producer, _event_type)
    setattr(ReportsService, _method.__name__, _method)
