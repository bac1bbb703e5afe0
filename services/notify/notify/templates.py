"""Notification texts per (event type, channel) and locale, rendered in a Jinja2 sandbox.

The sandbox keeps templates from reaching Python internals (tenants edit them);
StrictUndefined makes an unknown name an error instead of a blank, and `check` refuses a
template at save time whose syntax is broken or which names a variable the event does not
carry. Known variables absent from an event render empty (`finalize`), so an optional field
never prints "None". Output is plain text (SMS, inbox, robots, email), so no HTML autoescaping.

Built-in texts: `in_app` (title, body) for every event, `sms` (text) where an SMS makes sense;
email and robot messages reuse the in-app title/body unless the tenant saves their own.
"""
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")
PARTS = {"in_app": ("title", "body"), "email": ("title", "body"), "robot": ("title", "body"), "sms": ("text",)}

# The agreed field names every event may carry (COMMON.md), plus what notify adds itself.
COMMON_VARIABLES = frozenset({
    "ticket_id", "number", "type", "priority", "team_id", "technician_id", "assistant_ids", "dispatcher_id",
    "created_by", "branch_id", "customer_id", "customer_name", "contact_name", "contact_phone", "equipment_id",
    "warehouse_id", "manager_ids", "requested_by", "reason",
    # added by notify
    "event_type", "occurred_at", "recipient_name", "rating_url", "company_name", "technician_name",
})
EVENT_VARIABLES: dict[str, frozenset[str]] = {
    "ticket.created": frozenset({"description", "plan_id", "service_request_id"}),
    "ticket.assigned": frozenset({"assigned_by"}),
    "ticket.completed": frozenset({"summary", "completed_at", "parts_used", "service_items", "on_site_seconds"}),
    "ticket.overdue": frozenset({"deadline", "due_at"}),
    "ticket.cancelled": frozenset({"from_status"}),
    "ticket.reopened": frozenset({"from_status"}),
    "ticket.visited": frozenset({"satisfaction", "comment", "visited_at"}),
    "ticket.visit_requested": frozenset({"visit_id", "rating_path"}),
    "requisition.requested": frozenset({"requisition_id", "lines", "status", "kind"}),
    "requisition.approved": frozenset({"requisition_id", "lines", "status", "kind"}),
    "requisition.rejected": frozenset({"requisition_id", "lines", "status", "kind"}),
    "stock.low": frozenset({"part_id", "part_code", "part_name", "location_id", "quantity", "minimum",
                            "warehouse_name"}),
    "consumption.shortfall": frozenset({"ticket_number", "part_id", "requested", "available"}),
    "equipment.warranty_expiring": frozenset({"model", "serial_number", "due_date", "owner_id", "days_left"}),
    "equipment.maintenance_due": frozenset({"model", "serial_number", "due_date", "owner_id", "days_left"}),
    "equipment.maintenance_overdue": frozenset({"model", "serial_number", "due_date", "owner_id", "days_left"}),
    "customer.change_requested": frozenset({"request_id", "changes", "owner_id"}),
    "customer.change_approved": frozenset({"request_id", "changes", "approved_by"}),
    "customer.change_rejected": frozenset({"request_id", "rejected_by"}),
    "stock.return_requested": frozenset({"requisition_id", "lines", "status", "kind"}),
    "stock.return_approved": frozenset({"requisition_id", "lines", "status", "kind"}),
    "stock.return_rejected": frozenset({"requisition_id", "lines", "status", "kind"}),
    "equipment.inspection_due": frozenset({"model", "serial_number", "due_date", "owner_id", "days_left"}),
    "equipment.inspection_overdue": frozenset({"model", "serial_number", "due_date", "owner_id", "days_left"}),
    "ticket.published_to_pool": frozenset({"pool_team_id"}),
    "ticket.reassigned": frozenset({"from_technician_id", "from_branch_id"}),
    "ticket.closed": frozenset({"closed_at"}),
    "service_request.created": frozenset({"request_id", "channel", "description"}),
    "digest.daily": frozenset({"day", "created", "completed", "overdue", "satisfaction", "visits", "stock_alerts"}),
    "announcement.published": frozenset({"announcement_id", "title", "summary", "audience", "team_ids", "roles",
                                         "author_id"}),
    # report_url: the tenant's portal address + report_path (the no-login report page)
    "service_report.sent": frozenset({"channel", "recipient_email", "recipient_phone", "report_path", "report_url",
                                      "locale"}),
}


def variables_of(event_type: str) -> frozenset[str]:
    return COMMON_VARIABLES | EVENT_VARIABLES.get(event_type, frozenset())


def _t(zh_title, zh_body, en_title, en_body):
    return {"zh-CN": {"title": zh_title, "body": zh_body}, "en": {"title": en_title, "body": en_body}}


def _s(zh, en):
    return {"zh-CN": {"text": zh}, "en": {"text": en}}


_WO = "工单 {{ number }}（{{ customer_name }}）"
_WO_EN = "Work order {{ number }} ({{ customer_name }})"

# (event type, channel) → locale → part name → template source
TEMPLATES: dict[tuple[str, str], dict[str, dict[str, str]]] = {
    ("ticket.created", "in_app"): _t("新工单待分配", _WO + "已创建，等待派单。{{ description }}",
                                     "New work order to dispatch", _WO_EN + " was created and awaits dispatch. {{ description }}"),
    ("ticket.assigned", "in_app"): _t("您有新的工单", _WO + "已派给您，请及时接单。",
                                      "New work order for you", _WO_EN + " was assigned to you; please accept it."),
    ("ticket.assigned", "sms"): _s("【售后服务】您有新工单{{ number }}（{{ customer_name }}），请及时接单。",
                                   "[After-sales service] New work order {{ number }} ({{ customer_name }}) for you."),
    ("ticket.accepted", "in_app"): _t("工单已接单", _WO + "已被工程师{{ technician_name }}接单。",
                                      "Work order accepted", _WO_EN + " was accepted by {{ technician_name }}."),
    ("ticket.refused", "in_app"): _t("工单被拒绝", _WO + "被工程师{{ technician_name }}拒绝：{{ reason }}，请重新派单。",
                                     "Work order refused", _WO_EN + " was refused by {{ technician_name }}: {{ reason }}."),
    ("ticket.refused", "sms"): _s("【售后服务】工单{{ number }}被拒绝，请重新派单。",
                                  "[After-sales service] Work order {{ number }} was refused; please dispatch it again."),
    ("ticket.overdue", "in_app"): _t("工单已超时", _WO + "已超过{{ {'respond': '响应', 'arrive': '到场', 'complete': '完成'}.get(deadline, '') }}时限（{{ due_at }}）。",
                                     "Work order overdue", _WO_EN + " missed its {{ deadline }} deadline ({{ due_at }})."),
    ("ticket.overdue", "sms"): _s("【售后服务】工单{{ number }}已超时，请尽快处理。",
                                  "[After-sales service] Work order {{ number }} is overdue; please act now."),
    ("ticket.completed", "in_app"): _t("工单已完成", "工单 {{ number }}（{{ customer_name }}）已由工程师完成：{{ summary }}",
                                       "Work order completed",
                                       "Work order {{ number }} ({{ customer_name }}) was completed by the technician: {{ summary }}"),
    # The rating link (短信回访) comes with ticket.visit_requested, when the return visit is due.
    ("ticket.completed", "sms"): _s(
        "【售后服务】尊敬的{{ contact_name or '客户' }}，您的服务工单{{ number }}已完成，感谢您的支持。"
        "{% if rating_url %}请为本次服务评价：{{ rating_url }}{% endif %}",
        "[After-sales service] Dear {{ contact_name or 'customer' }}, your service work order {{ number }} "
        "has been completed. Thank you for your support.{% if rating_url %} Rate our service: {{ rating_url }}{% endif %}"),
    ("ticket.visit_requested", "in_app"): _t("等待客户评价", _WO + "已发起回访，等待客户评价：{{ rating_url }}",
                                             "Awaiting the customer's rating",
                                             _WO_EN + " awaits the customer's rating: {{ rating_url }}"),
    ("ticket.visit_requested", "sms"): _s(
        "【售后服务】尊敬的{{ contact_name or '客户' }}，请为工单{{ number }}的服务评价：{{ rating_url }}",
        "[After-sales service] Dear {{ contact_name or 'customer' }}, please rate the service of work order "
        "{{ number }}: {{ rating_url }}"),
    ("ticket.closed", "in_app"): _t("工单已关闭", _WO + "已关闭。", "Work order closed", _WO_EN + " was closed."),
    ("ticket.cancelled", "in_app"): _t("工单已取消", _WO + "已取消：{{ reason }}", "Work order cancelled",
                                       _WO_EN + " was cancelled: {{ reason }}"),
    ("ticket.reopened", "in_app"): _t("工单已重新打开", _WO + "已重新打开：{{ reason }}", "Work order reopened",
                                      _WO_EN + " was reopened: {{ reason }}"),
    ("ticket.published_to_pool", "in_app"): _t("工单池有新工单", _WO + "已发布到工单池，欢迎抢单。",
                                               "New order in the pool", _WO_EN + " is in the pool, grab it."),
    ("ticket.grabbed", "in_app"): _t("工单已被抢单", _WO + "已被{{ technician_name }}抢单。",
                                     "Work order grabbed", _WO_EN + " was grabbed by {{ technician_name }}."),
    ("ticket.reassigned", "in_app"): _t("工单已转派给您", _WO + "已转派给您，请及时接单。",
                                        "Work order reassigned to you", _WO_EN + " was reassigned to you."),
    ("ticket.reassignment_requested", "in_app"): _t("改派申请待处理", _WO + "的工程师{{ technician_name }}申请改派：{{ reason }}",
                                                    "Reassignment requested",
                                                    "{{ technician_name }} asks to reassign " + _WO_EN + ": {{ reason }}"),
    ("ticket.reassignment_rejected", "in_app"): _t("改派申请被驳回", _WO + "的改派申请被驳回：{{ reason }}",
                                                   "Reassignment rejected",
                                                   "Your reassignment request for " + _WO_EN + " was rejected: {{ reason }}"),
    ("ticket.visited", "in_app"): _t("工单已回访", _WO + "已回访，满意度 {{ satisfaction }}。{{ comment }}",
                                     "Work order visited", _WO_EN + " was visited, satisfaction {{ satisfaction }}. {{ comment }}"),
    ("requisition.requested", "in_app"): _t("备件申领待审批", "备件申领单 {{ number }} 待您审批。{{ reason }}",
                                            "Requisition to approve", "Requisition {{ number }} awaits your approval. {{ reason }}"),
    ("requisition.approved", "in_app"): _t("备件申领已通过", "您的备件申领单 {{ number }} 已审批通过。",
                                           "Requisition approved", "Your requisition {{ number }} was approved."),
    ("requisition.rejected", "in_app"): _t("备件申领被驳回", "您的备件申领单 {{ number }} 被驳回：{{ reason }}",
                                           "Requisition rejected", "Your requisition {{ number }} was rejected: {{ reason }}"),
    ("stock.low", "in_app"): _t("备件库存不足", "{{ warehouse_name }}备件 {{ part_code }} {{ part_name }} 库存 {{ quantity }}，低于下限 {{ minimum }}。",
                                "Low stock", "Part {{ part_code }} {{ part_name }}: {{ quantity }} left, below {{ minimum }}."),
    ("consumption.shortfall", "in_app"): _t("备件扣减不足", "工单 {{ ticket_number }} 用料超出个人库存：需要 {{ requested }}，仅有 {{ available }}。",
                                            "Parts shortfall", "Work order {{ ticket_number }} used {{ requested }}, only {{ available }} in stock."),
    ("equipment.warranty_expiring", "in_app"): _t("设备质保即将到期", "{{ customer_name }} 的设备 {{ model }}（{{ serial_number }}）质保将于 {{ due_date }} 到期。",
                                                  "Warranty expiring", "{{ customer_name }}'s {{ model }} ({{ serial_number }}) warranty ends on {{ due_date }}."),
    ("equipment.warranty_expiring", "sms"): _s("【售后服务】尊敬的{{ contact_name or '客户' }}，您的设备{{ model }}质保将于{{ due_date }}到期。",
                                               "[After-sales service] Your {{ model }} warranty ends on {{ due_date }}."),
    ("equipment.maintenance_due", "in_app"): _t("设备保养到期", "{{ customer_name }} 的设备 {{ model }}（{{ serial_number }}）应于 {{ due_date }} 保养。",
                                                "Maintenance due", "{{ customer_name }}'s {{ model }} ({{ serial_number }}) is due for maintenance on {{ due_date }}."),
    ("equipment.maintenance_due", "sms"): _s("【售后服务】尊敬的{{ contact_name or '客户' }}，您的设备{{ model }}应于{{ due_date }}保养，我们将与您联系。",
                                             "[After-sales service] Your {{ model }} is due for maintenance on {{ due_date }}; we will contact you."),
    ("equipment.maintenance_overdue", "in_app"): _t("设备保养已逾期", "{{ customer_name }} 的设备 {{ model }}（{{ serial_number }}）保养已逾期（应于 {{ due_date }}）。",
                                                    "Maintenance overdue", "{{ customer_name }}'s {{ model }} ({{ serial_number }}) maintenance is overdue (due {{ due_date }})."),
    ("customer.change_requested", "in_app"): _t("客户资料变更待审批", "客户 {{ customer_name }} 的资料变更申请 {{ number }} 待您审批。{{ reason }}",
                                                "Customer change to approve", "Change request {{ number }} for customer {{ customer_name }} awaits your approval. {{ reason }}"),
    ("customer.change_approved", "in_app"): _t("客户资料变更已通过", "客户 {{ customer_name }} 的资料变更申请 {{ number }} 已审批通过。",
                                               "Customer change approved", "Change request {{ number }} for customer {{ customer_name }} was approved."),
    ("customer.change_rejected", "in_app"): _t("客户资料变更被驳回", "客户 {{ customer_name }} 的资料变更申请 {{ number }} 被驳回：{{ reason }}",
                                               "Customer change rejected", "Change request {{ number }} for customer {{ customer_name }} was rejected: {{ reason }}"),
    ("stock.return_requested", "in_app"): _t("备件退回待审批", "备件退回单 {{ number }} 待您审批。{{ reason }}",
                                             "Parts return to approve", "Parts return {{ number }} awaits your approval. {{ reason }}"),
    ("stock.return_approved", "in_app"): _t("备件退回已通过", "您的备件退回单 {{ number }} 已审批通过。",
                                            "Parts return approved", "Your parts return {{ number }} was approved."),
    ("stock.return_rejected", "in_app"): _t("备件退回被驳回", "您的备件退回单 {{ number }} 被驳回：{{ reason }}",
                                            "Parts return rejected", "Your parts return {{ number }} was rejected: {{ reason }}"),
    ("equipment.inspection_due", "in_app"): _t("设备巡检到期", "{{ customer_name }} 的设备 {{ model }}（{{ serial_number }}）应于 {{ due_date }} 巡检。",
                                               "Inspection due", "{{ customer_name }}'s {{ model }} ({{ serial_number }}) is due for inspection on {{ due_date }}."),
    ("equipment.inspection_overdue", "in_app"): _t("设备巡检已逾期", "{{ customer_name }} 的设备 {{ model }}（{{ serial_number }}）巡检已逾期（应于 {{ due_date }}）。",
                                                   "Inspection overdue", "{{ customer_name }}'s {{ model }} ({{ serial_number }}) inspection is overdue (due {{ due_date }})."),
    ("service_request.created", "in_app"): _t("服务台新事件", "新服务事件 {{ number }}（{{ channel }}）：{{ description }}",
                                              "New service request", "New service request {{ number }} ({{ channel }}): {{ description }}"),
    ("announcement.published", "in_app"): _t("【公告】{{ title }}", "{{ summary }}",
                                             "[Announcement] {{ title }}", "{{ summary }}"),
    ("service_report.sent", "in_app"): _t("服务报告已发送", _WO + "的服务报告已发送给客户。",
                                          "Service report sent", "The service report of " + _WO_EN + " was sent to the customer."),
    ("service_report.sent", "email"): _t(
        "工单 {{ number }} 服务报告",
        "尊敬的{{ contact_name or '客户' }}：\n\n感谢您选择我们的服务。工单 {{ number }}"
        "{% if customer_name %}（{{ customer_name }}）{% endif %}的服务报告见附件（PDF）。"
        "{% if report_url %}\n\n您也可以在线查看：{{ report_url }}{% endif %}",
        "Service report of work order {{ number }}",
        "Dear {{ contact_name or 'customer' }},\n\nThank you for choosing our service. The service report of work "
        "order {{ number }}{% if customer_name %} ({{ customer_name }}){% endif %} is attached (PDF)."
        "{% if report_url %}\n\nYou can also view it online: {{ report_url }}{% endif %}"),
    ("service_report.sent", "sms"): _s(
        "【售后服务】尊敬的{{ contact_name or '客户' }}，工单{{ number }}的服务报告已生成"
        "{% if report_url %}，请查看：{{ report_url }}{% else %}。{% endif %}",
        "[After-sales service] Dear {{ contact_name or 'customer' }}, the service report of work order {{ number }} "
        "is ready{% if report_url %}: {{ report_url }}{% else %}.{% endif %}"),
    ("digest.daily", "in_app"): _t("{{ day }} 管理员日报",
                                   "新建工单 {{ created }}，完成 {{ completed }}，超时 {{ overdue }}；回访 {{ visits }} 次，平均满意度 {{ satisfaction or '—' }}；库存预警 {{ stock_alerts }}。",
                                   "Daily digest {{ day }}",
                                   "Orders created {{ created }}, completed {{ completed }}, overdue {{ overdue }}; {{ visits }} visits, "
                                   "average satisfaction {{ satisfaction or '-' }}; stock alerts {{ stock_alerts }}."),
}


def _finalize(value):
    return "" if value is None else value


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                            finalize=_finalize)


@lru_cache(maxsize=1024)
def _compile(source: str):
    return _env.from_string(source)


def builtin(event_type: str, channel: str, locale: str) -> dict[str, str] | None:
    """The built-in parts for (event, channel, locale), with fallbacks: a regional locale → its
    language → zh-CN; email, robot and sms → the in-app text. None when there is no text at all."""
    by_locale = TEMPLATES.get((event_type, channel)) or TEMPLATES.get((event_type, "in_app"))
    if by_locale is None:
        return None
    parts = by_locale.get(locale) or by_locale.get(locale.split("-")[0]) or by_locale[DEFAULT_LOCALE]
    if channel == "sms" and "text" not in parts:  # an SMS without its own text: the in-app body
        return {"text": parts["body"]}
    return parts


def render_parts(parts: dict[str, str], variables: dict) -> dict[str, str]:
    return {name: _compile(source).render(variables).strip() for name, source in parts.items()}


def render(event_type: str, channel: str, locale: str, variables: dict) -> dict[str, str]:
    """Every built-in part (title, body, text ...); raises LookupError without a template."""
    parts = builtin(event_type, channel, locale)
    if parts is None:
        raise LookupError(f"no {channel} template for {event_type}")
    return render_parts(parts, variables)


def check(event_type: str, channel: str, parts: dict[str, str]) -> list[dict]:
    """Errors of a template a tenant wants to save, as [{field, message}] (empty = fine):
    the right part names, valid syntax, only variables this event carries, and a trial render
    with sample values (the sandbox refuses unsafe attribute access only when rendering)."""
    errors = []
    expected = PARTS.get(channel)
    if expected is None:
        return [{"field": "channel", "message": f"must be one of {', '.join(PARTS)}"}]
    for name in parts:
        if name not in expected:
            errors.append({"field": f"parts.{name}", "message": f"unknown part; {channel} has {', '.join(expected)}"})
    for name in expected:
        if not (parts.get(name) or "").strip():
            errors.append({"field": f"parts.{name}", "message": "must not be empty"})
    known = variables_of(event_type)
    for name, source in parts.items():
        if name not in expected or not source:
            continue
        field = f"parts.{name}"
        try:
            used = meta.find_undeclared_variables(_env.parse(source))
            _env.from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            errors.append({"field": field, "message": f"template syntax error{f' on line {line}' if line else ''}: {exc.message}"})
            continue
        unknown = sorted(used - known)
        if unknown:
            errors.append({"field": field, "message": f"unknown variable(s) {', '.join(unknown)}; "
                                                      f"known: {', '.join(sorted(known))}"})
            continue
        try:
            _compile(source).render({v: "示例" for v in known})
        except Exception as exc:  # SecurityError, a filter on a wrong type ...
            errors.append({"field": field, "message": f"template cannot render: {exc}"})
    return errors
