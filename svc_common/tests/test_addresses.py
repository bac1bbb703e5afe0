import pytest

from svc_common.addresses import normalize_email, normalize_phone


@pytest.mark.parametrize("raw, expected", [
    ("13912345678", "13912345678"),
    ("+86 139-1234-5678", "13912345678"),
    ("86 (139) 1234 5678", "13912345678"),
    ("+4915112345678", "+4915112345678"),
    ("12345678901", None),       # not a mainland mobile prefix
    ("010-12345678", None),      # a landline cannot take an SMS
    ("", None), (None, None),
])
def test_phones_are_normalised_or_refused(raw, expected):
    assert normalize_phone(raw) == expected


def test_emails_are_normalised_or_refused():
    assert normalize_email(" Wang@Example.COM ") == "Wang@example.com"
    assert normalize_email("not-an-address") is None
    assert normalize_email(None) is None
