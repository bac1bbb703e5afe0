"""Notification texts per (event type, channel) and locale, rendered in a Jinja2 sandbox.

The sandbox keeps templates from reaching Python internals (templates will become
tenant-editable); StrictUndefined makes a missing variable an error instead of a blank.
Output is plain text (SMS, inbox), so no HTML autoescaping: clients escape on display.
"""
from functools import lru_cache

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_LOCALE = "zh-CN"

# (event type, channel) → locale → part name → template source
TEMPLATES: dict[tuple[str, str], dict[str, dict[str, str]]] = {
    ("ticket.completed", "in_app"): {
        "zh-CN": {
            "title": "工单已完成",
            "body": "工单 {{ number }}（{{ customer_name }}）已由工程师完成：{{ summary }}",
        },
        "en": {
            "title": "Work order completed",
            "body": "Work order {{ number }} ({{ customer_name }}) was completed by the technician: {{ summary }}",
        },
    },
    ("ticket.completed", "sms"): {
        # contact_name may be None: greet the customer generically rather than print "None".
        "zh-CN": {
            "text": "【售后服务】尊敬的{{ contact_name or '客户' }}，您的服务工单{{ number }}已完成，感谢您的支持。",
        },
        "en": {
            "text": "[After-sales service] Dear {{ contact_name or 'customer' }}, your service work order "
                    "{{ number }} has been completed. Thank you for your support.",
        },
    },
}

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=256)
def _compile(source: str):
    return _env.from_string(source)


def _parts(event_type: str, channel: str, locale: str) -> dict[str, str]:
    try:
        by_locale = TEMPLATES[(event_type, channel)]
    except KeyError:
        raise LookupError(f"no {channel} template for {event_type}") from None
    # "en-US" falls back to "en", an unknown locale to the default one.
    return by_locale.get(locale) or by_locale.get(locale.split("-")[0]) or by_locale[DEFAULT_LOCALE]


def render(event_type: str, channel: str, locale: str, variables: dict) -> dict[str, str]:
    """Every part (title, body, text ...) of a template; raises on a missing variable."""
    return {name: _compile(source).render(variables) for name, source in _parts(event_type, channel, locale).items()}
