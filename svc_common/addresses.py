"""Phone numbers and e-mail addresses that messages can be sent to — one rule for every service, so an
address one service accepts is one notify can deliver to."""
import re

from email_validator import EmailNotValidError, validate_email

CN_MOBILE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")  # mainland mobile, with or without +86
E164 = re.compile(r"^\+[1-9]\d{7,14}$")


def normalize_phone(phone: str | None) -> str | None:
    """The number to send to (11 digits for a mainland mobile, else E.164), or None when it is not one."""
    if not phone:
        return None
    cleaned = re.sub(r"[\s\-()]", "", str(phone))
    if CN_MOBILE.match(cleaned):
        return cleaned[-11:]
    return cleaned if E164.match(cleaned) else None


def normalize_email(email: str | None) -> str | None:
    """The normalised address, or None when it is not a valid one (deliverability is not checked)."""
    if not email:
        return None
    try:
        return validate_email(str(email).strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None
