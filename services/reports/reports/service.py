"""nameko entrypoints of the reports service: validate → handler → DTO."""
import base64
import logging
import uuid
from functools import partial

import eventlet
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from svc_common.batch_consumer import handle_batch, on_events
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
    RebuildJobOut,
    ReportOut,
    ReportQuery,
    ReportSettingsIn,
    ReportSettingsOut,
    TechnicianDailyIn,
    TechnicianDailyOut,
    WorkOrderSummaryOut,
)

log = logging.getLogger(__name__)

EXPORT_FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  "csv": "text/csv; charset=utf-8"}
SETTINGS_ROLES = ("admin",)


class BackgroundRebuilds(DependencyProvider):
    """Runs rebuild jobs (handlers.run_rebuild) in managed threads of this instance, yielding to the
    live handlers between pages."""

    def get_dependency(self, worker_ctx):
        return self

    def launch(self, db, tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
        self.container.spawn_managed_thread(partial(self._run, db, tenant_id, job_id), identifier=f"rebuild-{job_id}")

    @staticmethod
    def _run(db, tenant_id, job_id) -> None:
        try:
            handlers.run_rebuild(db, tenant_id, job_id, pause=eventlet.sleep)
        except Exception:  # an error in a managed thread would kill the container
            log.exception("rebuild %s stopped", job_id)


class InlineRebuilds:
    """Runs a rebuild job at once, in the caller's thread (unit tests, tools)."""

    def launch(self, db, tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
        handlers.run_rebuild(db, tenant_id, job_id)


class ReportsService(HealthRpc):
    name = "reports"
    platform = Platform(PLATFORM)
    rebuilds = BackgroundRebuilds()

    def _consume(self, envelopes):
        # two units of work per batch, each with its own work orders: one computes while the other waits
        # on PostgreSQL
        handle_batch(self.platform, envelopes, handlers.project_claimed, claims=handlers.claim_by_archiving,
                     partition=handlers.partition_key, partitions=2)

    def _require_admin(self, what: str) -> None:
        if self.platform.ctx.actor_role != "admin":
            raise Forbidden(f"only an admin may {what}")

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def start_rebuild(self):
        """Rebuild the caller's company's read models from its event archive, in the background
        (admin only): returns the job at once; `rebuild_status` follows it. The live reports keep
        consuming meanwhile (see handlers: rebuilds)."""
        self._require_admin("rebuild the reports")
        with self.platform.uow() as uow:
            job = handlers.start_rebuild(uow)
            job_id = job.id
        self.rebuilds.launch(self.platform.db, self.platform.ctx.tenant_id, job_id)
        with self.platform.uow() as uow:
            return dump(RebuildJobOut, handlers.rebuild_status(uow, job_id))

    @rpc(expected_exceptions=EXPECTED_ERRORS)
    def rebuild_status(self, job_id=None):
        """A rebuild job of the caller's company (its latest without an id): running, done or failed,
        events replayed of the archive's total."""
        if job_id is not None:
            try:
                job_id = uuid.UUID(str(job_id))
            except ValueError:
                raise field_error("job_id", "must be a UUID") from None
        with self.platform.uow() as uow:
            return dump(RebuildJobOut, handlers.rebuild_status(uow, job_id))

    @timer(interval=30)
    def resume_stale_rebuilds(self):
        """Take over rebuilds whose instance stopped (no heartbeat): restarted here from scratch."""
        for tenant_id, job_id in handlers.stale_rebuilds(self.platform.db):
            log.warning("taking over rebuild %s of tenant %s", job_id, tenant_id)
            self.rebuilds.launch(self.platform.db, tenant_id, job_id)

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
            out, job = handlers.update_report_settings(uow, parsed)
            job_id = job.id if job is not None else None
        if job_id is not None:  # a new time zone: the rollups are rebuilt in it, in the background
            self.rebuilds.launch(self.platform.db, self.platform.ctx.tenant_id, job_id)
        return dump(ReportSettingsOut, {**out, "rebuild_job_id": job_id})


def _subscribe(producer: str, event_type: str, method: str):
    @on_events(producer, event_type)  # in batches (svc_common.batch_consumer): a list of envelopes
    def handler(self, envelopes):
        self._consume(envelopes)
    handler.__name__ = method
    return handler


# Batch handlers (and so durable queues) for the events the read models are built from.
for _producer, _event_type, _name in handlers.SUBSCRIPTIONS:
    setattr(ReportsService, _name, _subscribe(_producer, _event_type, _name))
