"""Desk tables, on the tickets `Base` (one database, one migration chain)."""
import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from svc_common.db import TenantScoped, UTCDateTime, new_id, utcnow
from tickets.models import Base

Money = sa.Numeric(18, 2)


class DeskSettings(TenantScoped, Base):
    """服务台设置: return of done requests, required approval notes, assignment rules, satisfaction
    dimensions and tags, knowledge-base and settlement approval, automatic return visits. (The
    pending-assignment subscription is notify's 服务台 list: service_request.created goes to it.)"""
    __tablename__ = "desk_settings"
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_desk_settings_tenant"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    reopen_allowed: Mapped[bool] = mapped_column(default=False)
    approval_note_required: Mapped[bool] = mapped_column(default=False)
    assignment_rules: Mapped[list] = mapped_column(sa.JSON, default=list)
    satisfaction_dimensions: Mapped[list] = mapped_column(sa.JSON, default=list)
    satisfaction_tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    auto_return_visit: Mapped[bool] = mapped_column(default=True)
    kb_approval_required: Mapped[bool] = mapped_column(default=False)
    settlement_approval_required: Mapped[bool] = mapped_column(default=False)  # 审核 before 结算
    settlement_approver_role: Mapped[str] = mapped_column(sa.String(20), default="dispatcher")  # or admin only
    settlement_approver_ids: Mapped[list] = mapped_column(sa.JSON, default=list)  # named approvers; [] = by role
    report_fields: Mapped[list] = mapped_column(sa.JSON, default=list)  # the service report's fields; [] = all
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RequestType(TenantScoped, Base):
    """A service-request type (事件类型) with its own form."""
    __tablename__ = "desk_request_types"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code", name="uq_desk_request_type_code"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(100))
    name_en: Mapped[str | None] = mapped_column(sa.String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    fields: Mapped[list] = mapped_column(sa.JSON, default=list)
    approval_required: Mapped[bool] = mapped_column(default=False)
    components: Mapped[list] = mapped_column(sa.JSON, default=list)  # 附加组件 codes (domain.COMPONENTS)
    ticket_type: Mapped[str | None] = mapped_column(sa.String(40))  # default work-order type on conversion
    due_minutes: Mapped[int | None]  # timed out (超时) when not done by then
    sort_order: Mapped[int] = mapped_column(default=0)


class ServiceRequest(TenantScoped, Base):
    """服务事件."""
    __tablename__ = "desk_requests"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "number", name="uq_desk_request_number"),
        sa.UniqueConstraint("tenant_id", "source_ref", name="uq_desk_request_source"),
        sa.Index("ix_desk_requests_tenant_status", "tenant_id", "status"),
    )
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(30))
    # What created it outside the desk (the QR fault report's id): a redelivered event makes no second one.
    source_ref: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(20))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[str] = mapped_column(sa.String(30))
    status_before_pause: Mapped[str | None] = mapped_column(sa.String(30))
    subject: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    customer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    contact_name: Mapped[str | None] = mapped_column(sa.String(100))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(30))
    custom_fields: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    components: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # add-on component → its values
    attachments: Mapped[list] = mapped_column(sa.JSON, default=list)  # [{filename, content_type, size, storage_key}]
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    approval: Mapped[dict | None] = mapped_column(sa.JSON)  # {status, requested_by, note, decided_by, decision_note}
    outcome: Mapped[str | None] = mapped_column(sa.String(60))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    timed_out: Mapped[bool] = mapped_column(default=False)
    state_seconds: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    status_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    minutes_spent: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}


class RequestNote(TenantScoped, Base):
    """A note on a request (备注), optionally from a template, with the minutes it took (用时)."""
    __tablename__ = "desk_request_notes"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("desk_requests.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(sa.String(30))
    body: Mapped[str | None] = mapped_column(sa.Text)
    minutes: Mapped[int] = mapped_column(default=0)
    author_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoteTemplate(TenantScoped, Base):
    """服务台事件备注模板."""
    __tablename__ = "desk_note_templates"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)


class Plan(TenantScoped, Base):
    """计划任务 / 保养计划: recurring work orders for a customer, equipment or a group of equipment."""
    __tablename__ = "desk_plans"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200))
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    equipment_ids: Mapped[list] = mapped_column(sa.JSON, default=list)  # empty: one order for the customer
    rrule: Mapped[str] = mapped_column(sa.String(500))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(sa.String(50), default="Asia/Shanghai")  # where the rule's hours are
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lead_days: Mapped[int] = mapped_column(default=0)
    ticket_type: Mapped[str] = mapped_column(sa.String(40))
    description: Mapped[str] = mapped_column(sa.Text)
    priority: Mapped[str] = mapped_column(sa.String(20), default="normal")
    mode: Mapped[str] = mapped_column(sa.String(20))  # assign | pool
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    pool_team_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    paused: Mapped[bool] = mapped_column(default=False)
    ended: Mapped[bool] = mapped_column(default=False)
    # The next occurrence not yet generated (None: the rule has no more): the timer's cheap filter.
    next_occurrence_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_create_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)  # minus the lead time
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PlanOccurrence(TenantScoped, Base):
    """One generated order of a plan. The unique key is the exactly-once claim: it is inserted in the
    transaction that creates the order, so a second instance (or a restart) finds it and skips."""
    __tablename__ = "desk_plan_occurrences"
    __table_args__ = (sa.UniqueConstraint("plan_id", "occurrence_at", "target", name="uq_desk_plan_occurrence"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    plan_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("desk_plans.id", ondelete="CASCADE"), index=True)
    occurrence_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    target: Mapped[str] = mapped_column(sa.String(40))  # equipment id, or "customer"
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Settlement(TenantScoped, Base):
    """服务报价 (stage quote, before the work) and 结算 (stage final, after it) of one order."""
    __tablename__ = "desk_settlements"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "ticket_id", "stage", name="uq_desk_settlement_stage"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    number: Mapped[str] = mapped_column(sa.String(30))  # the order's number, for the queue
    customer_name: Mapped[str] = mapped_column(sa.String(200))
    stage: Mapped[str] = mapped_column(sa.String(10))  # quote | final
    status: Mapped[str] = mapped_column(sa.String(20))  # draft | approved | settled
    warranty: Mapped[bool | None]
    fee_lines: Mapped[list] = mapped_column(sa.JSON, default=list)
    cost_lines: Mapped[list] = mapped_column(sa.JSON, default=list)
    fee_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    cost_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    gross_profit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}


class ReturnVisit(TenantScoped, Base):
    """回访: manual (by phone) or automatic (an SMS link the customer opens to rate)."""
    __tablename__ = "desk_return_visits"
    __table_args__ = (sa.UniqueConstraint("token", name="uq_desk_visit_token"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    mode: Mapped[str] = mapped_column(sa.String(10))  # manual | auto
    status: Mapped[str] = mapped_column(sa.String(10))  # requested | rated
    token: Mapped[str | None] = mapped_column(sa.String(64))
    scores: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # dimension key → 1..5
    satisfaction: Mapped[int | None]
    tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    visitor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Article(TenantScoped, Base):
    """知识库 / 故障库 article."""
    __tablename__ = "kb_articles"
    __table_args__ = (sa.UniqueConstraint("share_token", name="uq_kb_share_token"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(sa.String(200))
    category: Mapped[str] = mapped_column(sa.String(100), index=True)
    fault_type: Mapped[str | None] = mapped_column(sa.String(100))
    symptom: Mapped[str | None] = mapped_column(sa.Text)
    solution: Mapped[str] = mapped_column(sa.Text)
    tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    fault_codes: Mapped[list] = mapped_column(sa.JSON, default=list)
    product_models: Mapped[list] = mapped_column(sa.JSON, default=list)
    attachments: Mapped[list] = mapped_column(sa.JSON, default=list)  # [{filename, content_type, size, storage_key}]
    status: Mapped[str] = mapped_column(sa.String(20))  # pending | published | rejected
    share_token: Mapped[str | None] = mapped_column(sa.String(64))
    # Lower-cased text of every searchable field: one LIKE serves Chinese and Latin queries alike.
    search_text: Mapped[str] = mapped_column(sa.Text, default="")
    author_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    review_note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ArticleLink(TenantScoped, Base):
    """An article used on a work order."""
    __tablename__ = "kb_article_links"
    __table_args__ = (sa.UniqueConstraint("article_id", "ticket_id", name="uq_kb_article_ticket"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    article_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    linked_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Announcement(TenantScoped, Base):
    """通知公告 to staff: everyone, some teams or some roles."""
    __tablename__ = "announcements"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    audience: Mapped[str] = mapped_column(sa.String(10))  # all | teams | roles
    team_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    roles: Mapped[list] = mapped_column(sa.JSON, default=list)
    author_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnnouncementRead(TenantScoped, Base):
    """Read receipt (已读)."""
    __tablename__ = "announcement_reads"
    __table_args__ = (sa.UniqueConstraint("announcement_id", "user_id", name="uq_announcement_read"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    announcement_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("announcements.id", ondelete="CASCADE"),
                                                       index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    read_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReportTemplate(TenantScoped, Base):
    """A tenant's Excel print template (自定义报告模板) with {{field}} placeholders; rows holding a
    {{parts.*}}, {{items.*}} or {{fees.*}} placeholder repeat once per line."""
    __tablename__ = "desk_report_templates"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(100))
    ticket_type: Mapped[str | None] = mapped_column(sa.String(40))
    filename: Mapped[str] = mapped_column(sa.String(200))
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReportLink(TenantScoped, Base):
    """A portal link to an order's service report, for the customer (no login; the token is the key)."""
    __tablename__ = "desk_report_links"
    __table_args__ = (sa.UniqueConstraint("token", name="uq_desk_report_link_token"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    token: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServiceRecord(TenantScoped, Base):
    """补录: work done before it was recorded (a phone fix, a visit without the app), entered afterwards
    and verified by the office before it counts in the customer's service history."""
    __tablename__ = "desk_service_records"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "number", name="uq_desk_service_record_number"),)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(sa.String(30))
    ticket_type: Mapped[str] = mapped_column(sa.String(40))
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    technician_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    done_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(sa.Text)
    parts_used: Mapped[list] = mapped_column(sa.JSON, default=list)
    service_items: Mapped[list] = mapped_column(sa.JSON, default=list)
    status: Mapped[str] = mapped_column(sa.String(20))  # pending | verified | rejected
    submitted_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    verified_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    verify_note: Mapped[str | None] = mapped_column(sa.Text)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The work order it is (backfilled, waiting for verification until verified); None for records
    # entered before back-fills became work orders.
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    ticket_number: Mapped[str | None] = mapped_column(sa.String(30))
