"""Use cases of the customers service: plain Python over a unit of work (no nameko)."""
import base64
import binascii
import datetime as dt
import json
import uuid
from decimal import Decimal

import sqlalchemy as sa

from svc_common.contracts import (
    AddressV1,
    ContactV1,
    CustomerCreatedV1,
    EquipmentRegisteredV1,
    ServiceSnapshotV1,
)
from svc_common.db import utcnow
from svc_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, field_error
from svc_common.geo import distance_m
from svc_common.uow import UnitOfWork

from . import domain
from .models import (
    Address,
    ChangeRequest,
    Contact,
    Customer,
    CustomFieldDef,
    Equipment,
    EquipmentHistory,
    FaultReport,
    ProductTemplate,
    QrBatch,
    QrCode,
    ReminderRule,
    ReminderSent,
)
from .schemas import (
    BindIn,
    ChangeRequestIn,
    CustomerIn,
    CustomerPatch,
    CustomFieldIn,
    CustomFieldOrderIn,
    CustomFieldPatch,
    EquipmentIn,
    EquipmentPatch,
    FaultReportIn,
    ProductTemplateIn,
    ProductTemplatePatch,
    QrBatchIn,
    ReminderRuleIn,
)

EDITOR_ROLES = ("admin", "dispatcher", "system")
ADMIN_ROLES = ("admin", "system")
BINDER_ROLES = ("admin", "technician", "system")


def require_role(uow: UnitOfWork, roles: tuple[str, ...], what: str) -> None:
    if uow.ctx.actor_role not in roles:
        raise Forbidden(f"{what} requires one of the roles: {', '.join(r for r in roles if r != 'system')}")


# ================================================================================= customers
def _contacts(data) -> list[Contact]:
    return [Contact(position=i, name=c.name, phone=c.phone, phone_key=domain.phone_key(c.phone))
            for i, c in enumerate(data)]


def _addresses(data) -> list[Address]:
    return [Address(position=i, text=a.text, latitude=a.latitude, longitude=a.longitude) for i, a in enumerate(data)]


def contacts_v1(customer: Customer) -> list[ContactV1]:
    return [ContactV1(contact_id=c.id, name=c.name, phone=c.phone) for c in customer.contacts]


def addresses_v1(customer: Customer) -> list[AddressV1]:
    return [AddressV1(address_id=a.id, text=a.text, latitude=a.latitude, longitude=a.longitude)
            for a in customer.addresses]


def create_customer(uow: UnitOfWork, data: CustomerIn) -> Customer:
    custom = domain.validate_custom_fields(field_defs(uow, "customer"), data.custom_fields)
    if not data.allow_duplicate:
        _refuse_duplicates(uow, data.name, [c.phone for c in data.contacts], None)
    customer = Customer(name=data.name, name_key=domain.name_key(data.name), created_by=uow.ctx.actor_id,
                        tags=_tags(data.tags), owner_id=data.owner_id, team_id=data.team_id, custom_fields=custom)
    customer.contacts = _contacts(data.contacts)
    customer.addresses = _addresses(data.addresses)
    uow.session.add(customer)
    uow.session.flush()
    uow.emit("customer.created", CustomerCreatedV1(
        customer_id=customer.id, name=customer.name, contacts=contacts_v1(customer),
        addresses=addresses_v1(customer)))
    return customer


def _tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in tags if t.strip()))


def _refuse_duplicates(uow: UnitOfWork, name: str, phones: list[str | None], exclude: uuid.UUID | None) -> None:
    matches = find_duplicates(uow, name, phones, exclude)
    if matches:
        names = ", ".join(f"{c.name} ({c.id})" for c, _ in matches[:3])
        errors = sorted({f for _, fields in matches for f in fields})
        raise Conflict(f"possible duplicate of {names}; send allow_duplicate=true to create it anyway",
                       [{"field": f, "message": "a customer with this value exists"} for f in errors])


def find_duplicates(uow: UnitOfWork, name: str | None, phones: list[str | None],
                    exclude: uuid.UUID | None = None) -> list[tuple[Customer, list[str]]]:
    """Customers that share the (normalized) name or a contact phone, with what they share."""
    found: dict[uuid.UUID, tuple[Customer, set[str]]] = {}
    if name:
        for c in uow.session.scalars(sa.select(Customer).where(Customer.name_key == domain.name_key(name))):
            found.setdefault(c.id, (c, set()))[1].add("name")
    keys = [k for k in (domain.phone_key(p) for p in phones) if k]
    if keys:
        query = sa.select(Customer).join(Contact, Contact.customer_id == Customer.id).where(Contact.phone_key.in_(keys))
        for c in uow.session.scalars(query).unique():
            found.setdefault(c.id, (c, set()))[1].add("contacts.phone")
    return [(c, sorted(f)) for cid, (c, f) in found.items() if cid != exclude]


def get_customer(uow: UnitOfWork, customer_id: uuid.UUID) -> Customer:
    return uow.get_or_404(Customer, customer_id, "customer_id", "customer")


def list_customers(uow: UnitOfWork, q: str | None, offset: int, limit: int, tag: str | None = None,
                   owner_id: uuid.UUID | None = None, team_id: uuid.UUID | None = None
                   ) -> tuple[list[Customer], int]:
    query = sa.select(Customer)
    if q:
        phone = domain.phone_key(q)
        by_phone = sa.select(Contact.customer_id).where(Contact.phone_key == phone) if phone and len(phone) >= 5 else None
        cond = Customer.name.contains(q)
        query = query.where(sa.or_(cond, Customer.id.in_(by_phone)) if by_phone is not None else cond)
    if owner_id:
        query = query.where(Customer.owner_id == owner_id)
    if team_id:
        query = query.where(Customer.team_id == team_id)
    if tag:
        # The tag list is short JSON text (json type on PostgreSQL keeps it as written, escaped like
        # json.dumps): match the quoted tag in it, the same on both backends.
        query = query.where(sa.cast(Customer.tags, sa.String).contains(json.dumps(tag), autoescape=True))
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(Customer.created_at, Customer.id).offset(offset).limit(limit)).all()
    return list(rows), total


def _customer_values(customer: Customer) -> dict:
    """The editable fields of a customer as JSON values (what a change request compares)."""
    return {
        "name": customer.name,
        "contacts": [{"name": c.name, "phone": c.phone} for c in customer.contacts],
        "addresses": [{"text": a.text, "latitude": str(a.latitude) if a.latitude is not None else None,
                       "longitude": str(a.longitude) if a.longitude is not None else None} for a in customer.addresses],
        "tags": list(customer.tags or []),
        "owner_id": str(customer.owner_id) if customer.owner_id else None,
        "team_id": str(customer.team_id) if customer.team_id else None,
        "custom_fields": dict(customer.custom_fields or {}),
    }


def _patch_values(uow: UnitOfWork, patch: CustomerPatch) -> dict:
    """The fields a patch sets, validated, as JSON values."""
    values = patch.model_dump(mode="json", exclude_unset=True)
    if "name" in values and values["name"] is None:
        raise field_error("name", "must not be empty")
    if "custom_fields" in values:
        values["custom_fields"] = domain.validate_custom_fields(field_defs(uow, "customer"),
                                                                values["custom_fields"] or {})
    if "tags" in values:
        values["tags"] = _tags(values["tags"] or [])
    for key in ("contacts", "addresses"):
        if key in values and values[key] is None:
            values[key] = []
    return values


def _apply_values(uow: UnitOfWork, customer: Customer, values: dict) -> list[str]:
    """Write validated values onto the customer; the names of the fields that really changed."""
    before = _customer_values(customer)
    changed = [k for k, v in values.items() if before.get(k) != v]
    patch = CustomerPatch.model_validate(values)
    for key in changed:
        if key == "contacts":
            customer.contacts = _contacts(patch.contacts or [])
        elif key == "addresses":
            customer.addresses = _addresses(patch.addresses or [])
        elif key == "name":
            customer.name, customer.name_key = patch.name, domain.name_key(patch.name)
        else:
            setattr(customer, key, getattr(patch, key))
    if changed:
        customer.updated_at = utcnow()
        uow.session.flush()
    return changed


def _emit_updated(uow: UnitOfWork, customer: Customer, changed: list[str]) -> None:
    from svc_common.contracts import CustomerUpdatedV1
    uow.emit("customer.updated", CustomerUpdatedV1(
        customer_id=customer.id, name=customer.name, changed=changed, owner_id=customer.owner_id,
        team_id=customer.team_id, tags=customer.tags or [], contacts=contacts_v1(customer),
        addresses=addresses_v1(customer)))


def update_customer(uow: UnitOfWork, customer_id: uuid.UUID, patch: CustomerPatch) -> Customer:
    require_role(uow, EDITOR_ROLES, "editing a customer (others send a change request)")
    customer = get_customer(uow, customer_id)
    changed = _apply_values(uow, customer, _patch_values(uow, patch))
    if changed:
        _emit_updated(uow, customer, changed)
    return customer


def nearby_customers(uow: UnitOfWork, latitude: Decimal, longitude: Decimal, radius_m: float,
                     limit: int) -> list[dict]:
    """Customers with an address within `radius_m` of the point, nearest first (one entry per customer,
    at its nearest address). Two plain queries: the bounding box's addresses with their customers
    (an index range scan), then the first contact of the nearest few."""
    lat, lng = float(latitude), float(longitude)
    min_lat, max_lat, min_lng, max_lng = domain.bounding_box(lat, lng, radius_m)
    rows = uow.session.execute(
        sa.select(Address.id, Address.customer_id, Address.text, Address.latitude, Address.longitude,
                  Customer.name, Customer.tags, Customer.owner_id, Customer.team_id)
        .join(Customer, Customer.id == Address.customer_id)
        .where(Address.latitude.between(min_lat, max_lat), Address.longitude.between(min_lng, max_lng))
    ).all()
    best: dict[uuid.UUID, tuple[float, object]] = {}
    for row in rows:
        d = distance_m(lat, lng, row.latitude, row.longitude)
        if d <= radius_m and (row.customer_id not in best or d < best[row.customer_id][0]):
            best[row.customer_id] = (d, row)
    nearest = sorted(best.values(), key=lambda pair: pair[0])[:limit]
    contacts = {c.customer_id: c for c in uow.session.execute(
        sa.select(Contact.customer_id, Contact.name, Contact.phone)
        .where(Contact.customer_id.in_([row.customer_id for _, row in nearest]), Contact.position == 0))}
    return [{"customer_id": row.customer_id, "name": row.name, "tags": row.tags or [], "owner_id": row.owner_id,
             "team_id": row.team_id, "address_id": row.id, "address": row.text, "latitude": row.latitude,
             "longitude": row.longitude, "distance_m": round(d, 1),
             "contact_name": contacts[row.customer_id].name if row.customer_id in contacts else None,
             "contact_phone": contacts[row.customer_id].phone if row.customer_id in contacts else None}
            for d, row in nearest]


# ============================================================================ custom fields
def field_defs(uow: UnitOfWork, entity: str) -> list[domain.FieldDef]:
    return [domain.FieldDef(d.key, d.label, d.type, tuple(d.options or ()), d.required)
            for d in _custom_rows(uow, entity)]


def _custom_rows(uow: UnitOfWork, entity: str) -> list[CustomFieldDef]:
    return list(uow.session.scalars(sa.select(CustomFieldDef).where(CustomFieldDef.entity == entity)
                                    .order_by(CustomFieldDef.position, CustomFieldDef.key)))


def list_fields(uow: UnitOfWork, entity: str) -> list[dict]:
    """Built-in fields first (fixed), then the tenant's own in their order."""
    if entity not in domain.ENTITIES:
        raise field_error("entity", f"must be one of: {', '.join(domain.ENTITIES)}")
    builtin = [{"entity": entity, "key": key, "label": zh, "label_en": en, "type": "builtin", "position": i,
                "builtin": True} for i, (key, zh, en) in enumerate(domain.BUILTIN_FIELDS[entity])]
    custom = [{"id": d.id, "entity": entity, "key": d.key, "label": d.label, "type": d.type, "options": d.options,
               "required": d.required, "position": len(builtin) + i, "builtin": False}
              for i, d in enumerate(_custom_rows(uow, entity))]
    return builtin + custom


def _check_options(type_: str, options: list[str] | None) -> None:
    if type_ == "select" and not options:
        raise field_error("options", "a select field needs at least one option")
    if type_ != "select" and options:
        raise field_error("options", "only select fields have options")


def add_field(uow: UnitOfWork, data: CustomFieldIn) -> CustomFieldDef:
    require_role(uow, ADMIN_ROLES, "configuring custom fields")
    if data.key in domain.builtin_keys(data.entity):
        raise field_error("key", "is a built-in field")
    _check_options(data.type, data.options)
    rows = _custom_rows(uow, data.entity)
    if any(r.key == data.key for r in rows):
        raise Conflict(f"custom field {data.key} exists", [{"field": "key", "message": "already exists"}])
    field = CustomFieldDef(entity=data.entity, key=data.key, label=data.label, type=data.type,
                           options=list(dict.fromkeys(data.options)), required=data.required,
                           position=max((r.position for r in rows), default=-1) + 1)
    uow.session.add(field)
    uow.session.flush()
    return field


def _field_by_key(uow: UnitOfWork, entity: str, key: str) -> CustomFieldDef:
    if key in domain.builtin_keys(entity):
        raise Conflict(f"{key} is a built-in field: it cannot be changed or deleted",
                       [{"field": "key", "message": "built-in field"}])
    field = uow.session.scalar(sa.select(CustomFieldDef).where(CustomFieldDef.entity == entity,
                                                               CustomFieldDef.key == key))
    if field is None:
        raise NotFound(f"custom field {key} not found", [{"field": "key", "message": "not found"}])
    return field


def update_field(uow: UnitOfWork, entity: str, key: str, patch: CustomFieldPatch) -> CustomFieldDef:
    require_role(uow, ADMIN_ROLES, "configuring custom fields")
    field = _field_by_key(uow, entity, key)
    values = patch.model_dump(exclude_unset=True)
    if "options" in values:
        _check_options(field.type, values["options"])
        values["options"] = list(dict.fromkeys(values["options"] or []))
    for name, value in values.items():
        if value is not None:
            setattr(field, name, value)
    uow.session.flush()
    return field


def delete_field(uow: UnitOfWork, entity: str, key: str) -> None:
    """Deleting a field drops its definition; values already stored stay in the rows' JSON but are
    neither shown as a field nor validated any more."""
    require_role(uow, ADMIN_ROLES, "configuring custom fields")
    uow.session.delete(_field_by_key(uow, entity, key))
    uow.session.flush()


def reorder_fields(uow: UnitOfWork, data: CustomFieldOrderIn) -> list[dict]:
    require_role(uow, ADMIN_ROLES, "configuring custom fields")
    rows = {r.key: r for r in _custom_rows(uow, data.entity)}
    if sorted(data.keys) != sorted(rows):
        raise field_error("keys", f"must list each custom field exactly once: {', '.join(sorted(rows))}")
    for position, key in enumerate(data.keys):
        rows[key].position = position
    uow.session.flush()
    return list_fields(uow, data.entity)


# =========================================================================== change requests
def request_change(uow: UnitOfWork, customer_id: uuid.UUID, data: ChangeRequestIn) -> ChangeRequest:
    """A change that waits for approval; the old values are recorded beside the new ones now."""
    from svc_common.contracts import ChangeV1, CustomerChangeRequestedV1
    customer = get_customer(uow, customer_id)
    new = _patch_values(uow, data.changes)
    old = _customer_values(customer)
    changes = {k: {"old": old.get(k), "new": v} for k, v in new.items() if old.get(k) != v}
    if not changes:
        raise field_error("changes", "nothing differs from the customer's current data")
    request = ChangeRequest(number=uow.next_number("change_request", "CR"), customer_id=customer.id,
                            changes=changes, reason=data.reason, requested_by=uow.ctx.actor_id)
    uow.session.add(request)
    uow.session.flush()
    uow.emit("customer.change_requested", CustomerChangeRequestedV1(
        request_id=request.id, number=request.number, customer_id=customer.id, customer_name=customer.name,
        requested_by=request.requested_by, owner_id=customer.owner_id, team_id=customer.team_id,
        changes=[ChangeV1(field=k, old=v["old"], new=v["new"]) for k, v in changes.items()], reason=data.reason))
    return request


def get_change_request(uow: UnitOfWork, request_id: uuid.UUID) -> ChangeRequest:
    return uow.get_or_404(ChangeRequest, request_id, "request_id", "change request")


def list_change_requests(uow: UnitOfWork, status: str | None, customer_id: uuid.UUID | None,
                         offset: int, limit: int) -> tuple[list[ChangeRequest], int]:
    query = sa.select(ChangeRequest)
    if status:
        query = query.where(ChangeRequest.status == status)
    if customer_id:
        query = query.where(ChangeRequest.customer_id == customer_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(ChangeRequest.requested_at.desc(), ChangeRequest.id)
                               .offset(offset).limit(limit))
    return list(rows), total


def _pending(uow: UnitOfWork, request_id: uuid.UUID) -> ChangeRequest:
    require_role(uow, ADMIN_ROLES, "deciding a change request")
    request = get_change_request(uow, request_id)
    if request.status != "pending":
        raise Conflict(f"change request {request.number} is {request.status} already",
                       [{"field": "status", "message": f"is {request.status}"}])
    return request


def approve_change(uow: UnitOfWork, request_id: uuid.UUID, note: str | None) -> ChangeRequest:
    from svc_common.contracts import ChangeV1, CustomerChangeApprovedV1
    request = _pending(uow, request_id)
    customer = get_customer(uow, request.customer_id)
    values = {k: v["new"] for k, v in request.changes.items()}
    if "custom_fields" in values:  # the tenant's fields may have changed since the request
        values["custom_fields"] = domain.validate_custom_fields(field_defs(uow, "customer"), values["custom_fields"])
    changed = _apply_values(uow, customer, values)
    request.status, request.decided_by, request.decided_at = "approved", uow.ctx.actor_id, utcnow()
    request.decision_note = note
    uow.session.flush()
    uow.emit("customer.change_approved", CustomerChangeApprovedV1(
        request_id=request.id, number=request.number, customer_id=customer.id, customer_name=customer.name,
        requested_by=request.requested_by, approved_by=uow.ctx.actor_id,
        changes=[ChangeV1(field=k, old=v["old"], new=v["new"]) for k, v in request.changes.items()]))
    if changed:
        _emit_updated(uow, customer, changed)
    return request


def reject_change(uow: UnitOfWork, request_id: uuid.UUID, note: str | None) -> ChangeRequest:
    from svc_common.contracts import CustomerChangeRejectedV1
    request = _pending(uow, request_id)
    customer = get_customer(uow, request.customer_id)
    request.status, request.decided_by, request.decided_at = "rejected", uow.ctx.actor_id, utcnow()
    request.decision_note = note
    uow.session.flush()
    uow.emit("customer.change_rejected", CustomerChangeRejectedV1(
        request_id=request.id, number=request.number, customer_id=customer.id, customer_name=customer.name,
        requested_by=request.requested_by, rejected_by=uow.ctx.actor_id, reason=note))
    return request


# ========================================================================= product templates
def create_template(uow: UnitOfWork, data: ProductTemplateIn) -> ProductTemplate:
    if uow.session.scalar(sa.select(ProductTemplate.id).where(ProductTemplate.model == data.model)):
        raise Conflict(f"a template for model {data.model} exists", [{"field": "model", "message": "already exists"}])
    template = ProductTemplate(**data.model_dump())
    uow.session.add(template)
    uow.session.flush()
    return template


def get_template(uow: UnitOfWork, template_id: uuid.UUID) -> ProductTemplate:
    return uow.get_or_404(ProductTemplate, template_id, "template_id", "product template")


def update_template(uow: UnitOfWork, template_id: uuid.UUID, patch: ProductTemplatePatch) -> ProductTemplate:
    template = get_template(uow, template_id)
    for key, value in patch.model_dump(exclude_unset=True).items():
        setattr(template, key, value if value is not None or key != "specs" else {})
    uow.session.flush()
    return template


def list_templates(uow: UnitOfWork, q: str | None) -> list[ProductTemplate]:
    query = sa.select(ProductTemplate).order_by(ProductTemplate.model)
    if q:
        query = query.where(sa.or_(ProductTemplate.model.contains(q), ProductTemplate.name.contains(q)))
    return list(uow.session.scalars(query))


# ================================================================================ equipment
def _check_address(customer: Customer, address_id: uuid.UUID | None) -> None:
    if address_id is not None and all(a.id != address_id for a in customer.addresses):
        raise field_error("address_id", "is not an address of this customer")


def register_equipment(uow: UnitOfWork, customer_id: uuid.UUID, data: EquipmentIn) -> Equipment:
    customer = get_customer(uow, customer_id)
    _check_address(customer, data.address_id)
    duplicate = uow.session.scalar(sa.select(Equipment.id).where(Equipment.serial_number == data.serial_number))
    if duplicate:
        raise Conflict(f"serial number {data.serial_number} is already registered",
                       [{"field": "serial_number", "message": "already registered"}])
    template = get_template(uow, data.template_id) if data.template_id else None
    model = data.model or (template.model if template else None)
    if not model:
        raise field_error("model", "required (or give a template_id)")
    interval = data.maintenance_interval_days or (template.maintenance_interval_days if template else None)
    warranty_end = data.warranty_end or domain.warranty_end_from(
        data.install_date, template.warranty_months if template else None)
    next_due = data.next_maintenance_date or domain.next_maintenance_from(
        data.last_maintenance_date or data.install_date, interval)
    equipment = Equipment(
        customer_id=customer_id, model=model, serial_number=data.serial_number, template_id=data.template_id,
        address_id=data.address_id, install_date=data.install_date, warranty_end=warranty_end,
        maintenance_interval_days=interval, last_maintenance_date=data.last_maintenance_date,
        next_maintenance_date=next_due, status=data.status,
        inspection_interval_days=data.inspection_interval_days,
        next_inspection_date=data.next_inspection_date or domain.next_maintenance_from(
            data.install_date, data.inspection_interval_days),
        custom_fields=domain.validate_custom_fields(field_defs(uow, "equipment"), data.custom_fields))
    uow.session.add(equipment)
    uow.session.flush()
    uow.emit("equipment.registered", EquipmentRegisteredV1(
        equipment_id=equipment.id, customer_id=customer_id, model=equipment.model,
        serial_number=equipment.serial_number, warranty_end=equipment.warranty_end, status=equipment.status,
        next_maintenance_date=equipment.next_maintenance_date, **_install_address(customer, equipment.address_id)))
    return equipment


def _install_address(customer: Customer, address_id: uuid.UUID | None) -> dict:
    address = next((a for a in customer.addresses if a.id == address_id), None)
    if address is None:
        return {}
    return {"address_id": address.id, "address": address.text, "latitude": address.latitude,
            "longitude": address.longitude}


def get_equipment(uow: UnitOfWork, equipment_id: uuid.UUID) -> Equipment:
    return uow.get_or_404(Equipment, equipment_id, "equipment_id", "equipment")


def find_equipment_by_serial(uow: UnitOfWork, serial_number: str) -> Equipment | None:
    return uow.session.scalar(sa.select(Equipment).where(Equipment.serial_number == serial_number))


def update_equipment(uow: UnitOfWork, equipment_id: uuid.UUID, patch: EquipmentPatch) -> Equipment:
    from svc_common.contracts import EquipmentUpdatedV1
    require_role(uow, EDITOR_ROLES + ("technician",), "editing equipment")
    equipment = get_equipment(uow, equipment_id)
    values = patch.model_dump(exclude_unset=True)
    if "custom_fields" in values:
        values["custom_fields"] = domain.validate_custom_fields(field_defs(uow, "equipment"),
                                                                values["custom_fields"] or {})
    for required in ("model", "customer_id", "status"):
        if required in values and values[required] is None:
            raise field_error(required, "must not be empty")
    customer = get_customer(uow, values.get("customer_id") or equipment.customer_id)
    if "customer_id" in values and "address_id" not in values and equipment.address_id:
        values["address_id"] = None  # the old address belongs to the old customer
    _check_address(customer, values.get("address_id"))
    if "maintenance_interval_days" in values and "next_maintenance_date" not in values:
        values["next_maintenance_date"] = domain.next_maintenance_from(
            equipment.last_maintenance_date or equipment.install_date, values["maintenance_interval_days"])
    if "inspection_interval_days" in values and "next_inspection_date" not in values:
        values["next_inspection_date"] = domain.next_maintenance_from(
            equipment.last_inspection_date or equipment.install_date, values["inspection_interval_days"])
    changed = [k for k, v in values.items() if getattr(equipment, k) != v]
    for key in changed:
        setattr(equipment, key, values[key])
    if changed:
        equipment.updated_at = utcnow()
        uow.session.flush()
        uow.emit("equipment.updated", EquipmentUpdatedV1(
            equipment_id=equipment.id, customer_id=equipment.customer_id, model=equipment.model,
            serial_number=equipment.serial_number, status=equipment.status, warranty_end=equipment.warranty_end,
            next_maintenance_date=equipment.next_maintenance_date, changed=changed,
            **_install_address(customer, equipment.address_id)))
    return equipment


def list_equipment(uow: UnitOfWork, customer_id: uuid.UUID | None, status: str | None = None,
                   q: str | None = None, maintenance_before: dt.date | None = None,
                   warranty_before: dt.date | None = None, offset: int = 0, limit: int | None = None
                   ) -> list[Equipment]:
    return list(uow.session.scalars(_equipment_query(customer_id, status, q, maintenance_before, warranty_before)
                                    .order_by(Equipment.created_at, Equipment.id).offset(offset).limit(limit)))


def count_equipment(uow: UnitOfWork, customer_id: uuid.UUID | None, status: str | None = None,
                    q: str | None = None, maintenance_before: dt.date | None = None,
                    warranty_before: dt.date | None = None) -> int:
    query = _equipment_query(customer_id, status, q, maintenance_before, warranty_before)
    return uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()


def _equipment_query(customer_id, status, q, maintenance_before, warranty_before):
    query = sa.select(Equipment)
    if customer_id:
        query = query.where(Equipment.customer_id == customer_id)
    if status:
        query = query.where(Equipment.status == status)
    if q:
        query = query.where(sa.or_(Equipment.serial_number.contains(q), Equipment.model.contains(q)))
    if maintenance_before:
        query = query.where(Equipment.next_maintenance_date <= maintenance_before)
    if warranty_before:
        query = query.where(Equipment.warranty_end <= warranty_before)
    return query


def customer_service_events(uow: UnitOfWork, customer_id: uuid.UUID, limit: int = 50) -> list[EquipmentHistory]:
    """The service history of all the customer's equipment, newest first."""
    return list(uow.session.scalars(
        sa.select(EquipmentHistory).join(Equipment, Equipment.id == EquipmentHistory.equipment_id)
        .where(Equipment.customer_id == customer_id)
        .order_by(EquipmentHistory.occurred_at.desc(), EquipmentHistory.id).limit(limit)))


def equipment_history(uow: UnitOfWork, equipment_id: uuid.UUID, limit: int = 100) -> list[EquipmentHistory]:
    get_equipment(uow, equipment_id)
    return list(uow.session.scalars(
        sa.select(EquipmentHistory).where(EquipmentHistory.equipment_id == equipment_id)
        .order_by(EquipmentHistory.occurred_at.desc(), EquipmentHistory.id).limit(limit)))


HISTORY_EVENTS = ("ticket.created", "ticket.assigned", "ticket.checked_in", "ticket.completed",
                  "ticket.cancelled", "ticket.closed", "ticket.reopened")


# Events whose contract carries the order's equipment_id: an order's equipment is set when it is
# created, so one of these without it is about an order without equipment, with no history to keep.
EVENTS_WITH_EQUIPMENT = ("ticket.created", "ticket.completed")


def history_equipment_id(uow: UnitOfWork, event_type: str, data: dict) -> uuid.UUID | None:
    """The equipment whose history a ticket event belongs to, or None (most orders have none).
    Cheap on purpose: every work-order event of every tenant comes through here."""
    equipment_id = data.get("equipment_id")
    if equipment_id:
        return uuid.UUID(str(equipment_id))
    if event_type in EVENTS_WITH_EQUIPMENT:
        return None  # no query: the order has no equipment
    return uow.session.scalar(sa.select(EquipmentHistory.equipment_id)
                              .where(EquipmentHistory.ticket_id == uuid.UUID(str(data["ticket_id"]))).limit(1))


def apply_ticket_event(uow: UnitOfWork, event_type: str, data: dict, occurred_at: dt.datetime) -> None:
    """Service history from tickets' events; a completed maintenance / inspection order restarts
    that interval. Events without equipment_id are matched by ticket to an earlier entry."""
    ticket_id = uuid.UUID(str(data["ticket_id"]))
    equipment_id = history_equipment_id(uow, event_type, data)
    equipment = uow.session.get(Equipment, equipment_id) if equipment_id else None
    if equipment is None or equipment.tenant_id != uow.ctx.tenant_id:
        return  # not about equipment we know: nothing to record
    when = occurred_at
    if event_type == "ticket.completed" and data.get("completed_at"):
        when = dt.datetime.fromisoformat(str(data["completed_at"]))
    ticket_type = data.get("type") or uow.session.scalar(
        sa.select(EquipmentHistory.ticket_type).where(EquipmentHistory.ticket_id == ticket_id,
                                                      EquipmentHistory.ticket_type.is_not(None)).limit(1))
    uow.session.add(EquipmentHistory(
        equipment_id=equipment.id, ticket_id=ticket_id, number=data.get("number") or "",
        event_type=event_type, ticket_type=ticket_type,
        technician_id=uuid.UUID(str(data["technician_id"])) if data.get("technician_id") else None,
        summary=(data.get("summary") or data.get("reason") or None), occurred_at=when))
    if event_type == "ticket.completed" and ticket_type in domain.INTERVAL_OF_TYPE:
        interval_attr, last_attr, next_attr = domain.INTERVAL_OF_TYPE[ticket_type]
        done = when.astimezone(dt.timezone.utc).date()
        setattr(equipment, last_attr, done)
        if getattr(equipment, interval_attr):
            setattr(equipment, next_attr, domain.next_maintenance_from(done, getattr(equipment, interval_attr)))
    uow.session.flush()


def service_snapshot(uow: UnitOfWork, customer_id: uuid.UUID, equipment_id: uuid.UUID | None,
                     today: dt.date) -> dict:
    """Customer, first contact, address (the equipment's install address, else the first) and equipment,
    as a work order records them."""
    customer = get_customer(uow, customer_id)
    equipment = None
    if equipment_id is not None:
        equipment = get_equipment(uow, equipment_id)
        if equipment.customer_id != customer.id:
            raise Conflict("equipment belongs to another customer",
                           [{"field": "equipment_id", "message": "belongs to another customer"}])
    contact = customer.contacts[0] if customer.contacts else None
    address = customer.addresses[0] if customer.addresses else None
    if equipment is not None and equipment.address_id:
        address = next((a for a in customer.addresses if a.id == equipment.address_id), address)
    return {
        "customer_id": customer.id, "customer_name": customer.name,
        "contact_name": contact.name if contact else None, "contact_phone": contact.phone if contact else None,
        "address": address.text if address else None,
        "latitude": address.latitude if address else None, "longitude": address.longitude if address else None,
        "equipment_id": equipment.id if equipment else None,
        "equipment_model": equipment.model if equipment else None,
        "serial_number": equipment.serial_number if equipment else None,
        "under_warranty": ServiceSnapshotV1.warranty_status(equipment.warranty_end, today) if equipment else None,
    }


# ============================================================================ QR codes
def create_batch(uow: UnitOfWork, data: QrBatchIn) -> QrBatch:
    """A batch of unused codes. Inserted in bulk (thousands per batch); a code that collides with an
    existing one (60 random bits: practically never) is drawn again."""
    require_role(uow, EDITOR_ROLES, "creating QR codes")
    batch = QrBatch(number=uow.next_number("qr_batch", "QB"), size=data.size, note=data.note,
                    created_by=uow.ctx.actor_id)
    uow.session.add(batch)
    uow.session.flush()
    table = QrCode.__table__
    codes: set[str] = set()
    while len(codes) < data.size:
        fresh = list({domain.new_code() for _ in range(data.size - len(codes))} - codes)
        for start in range(0, len(fresh), 5000):
            part = set(fresh[start:start + 5000])
            # Codes are unique across tenants: a Core select on the table (not tenant-filtered).
            codes |= part - set(uow.session.scalars(sa.select(table.c.code).where(table.c.code.in_(part))))
    rows = [{"id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "batch_id": batch.id, "seq": i + 1, "code": code,
             "status": "unused"} for i, code in enumerate(codes)]
    for start in range(0, len(rows), 2000):
        uow.session.execute(sa.insert(table), rows[start:start + 2000])
    return batch


def _bound_counts(uow: UnitOfWork, batch_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not batch_ids:
        return {}
    return dict(uow.session.execute(
        sa.select(QrCode.batch_id, sa.func.count()).where(QrCode.batch_id.in_(batch_ids), QrCode.status == "bound")
        .group_by(QrCode.batch_id)).all())


def list_batches(uow: UnitOfWork, offset: int, limit: int) -> tuple[list[dict], int]:
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(QrBatch))
    batches = list(uow.session.scalars(sa.select(QrBatch).order_by(QrBatch.created_at.desc(), QrBatch.id)
                                       .offset(offset).limit(limit)))
    bound = _bound_counts(uow, [b.id for b in batches])
    return [_batch_dict(b, bound.get(b.id, 0)) for b in batches], total


def _batch_dict(batch: QrBatch, bound: int) -> dict:
    return {"id": batch.id, "number": batch.number, "size": batch.size, "note": batch.note,
            "created_at": batch.created_at, "created_by": batch.created_by, "bound": bound}


def get_batch(uow: UnitOfWork, batch_id: uuid.UUID) -> dict:
    batch = uow.get_or_404(QrBatch, batch_id, "batch_id", "QR code batch")
    return _batch_dict(batch, _bound_counts(uow, [batch.id]).get(batch.id, 0))


def list_codes(uow: UnitOfWork, batch_id: uuid.UUID | None, status: str | None, offset: int,
               limit: int | None) -> tuple[list[QrCode], int]:
    query = sa.select(QrCode)
    if batch_id:
        uow.get_or_404(QrBatch, batch_id, "batch_id", "QR code batch")
        query = query.where(QrCode.batch_id == batch_id)
    if status:
        query = query.where(QrCode.status == status)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(QrCode.batch_id, QrCode.seq)
    if limit is not None:
        query = query.offset(offset).limit(limit)
    return list(uow.session.scalars(query)), total


def batch_code_strings(uow: UnitOfWork, batch_id: uuid.UUID) -> list[tuple[int, str]]:
    """(seq, code) of a whole batch, for label export: plain tuples (thousands of rows)."""
    uow.get_or_404(QrBatch, batch_id, "batch_id", "QR code batch")
    return [tuple(r) for r in uow.session.execute(
        sa.select(QrCode.seq, QrCode.code).where(QrCode.batch_id == batch_id).order_by(QrCode.seq))]


def get_code(uow: UnitOfWork, code: str) -> QrCode:
    normalized = domain.normalize_code(code)
    row = uow.session.scalar(sa.select(QrCode).where(QrCode.code == normalized)) if normalized else None
    if row is None:
        raise NotFound(f"QR code {code} not found", [{"field": "code", "message": "not found"}])
    return row


def scan_code(uow: UnitOfWork, code: str) -> dict:
    """What a logged-in user's scan opens: registration for an unbound code, the equipment for a bound one."""
    row = get_code(uow, code)
    result = {"code": row.code, "printed_code": domain.printed_code(row.code), "status": row.status,
              "batch_id": row.batch_id, "equipment": None, "customer": None,
              "can_bind": row.status == "unused" and uow.ctx.actor_role in BINDER_ROLES}
    if row.equipment_id:
        equipment = get_equipment(uow, row.equipment_id)
        result["equipment"] = equipment
        result["customer"] = get_customer(uow, equipment.customer_id)
    return result


def bind_code(uow: UnitOfWork, code: str, data: BindIn) -> tuple[QrCode, Equipment]:
    """建档贴码: bind an unused code to existing equipment or to equipment registered now."""
    from svc_common.contracts import QrCodeBoundV1
    require_role(uow, BINDER_ROLES, "binding a QR code")
    row = get_code(uow, code)
    if row.status != "unused":
        raise Conflict(f"QR code {row.code} is bound already", [{"field": "code", "message": "bound already"}])
    if data.equipment_id:
        equipment = get_equipment(uow, data.equipment_id)
    else:
        new = data.equipment
        equipment = register_equipment(uow, new.customer_id, EquipmentIn.model_validate(
            new.model_dump(exclude={"customer_id"})))
    if uow.session.scalar(sa.select(QrCode.id).where(QrCode.equipment_id == equipment.id)):
        raise Conflict("this equipment has a QR code already", [{"field": "equipment_id", "message": "has a code"}])
    # Guarded update: of two concurrent binds of one code, exactly one wins.
    won = uow.session.execute(
        sa.update(QrCode).where(QrCode.id == row.id, QrCode.status == "unused")
        .values(status="bound", equipment_id=equipment.id, bound_at=utcnow(), bound_by=uow.ctx.actor_id)
        .execution_options(synchronize_session="fetch")).rowcount
    if won != 1:
        raise Conflict(f"QR code {row.code} is bound already", [{"field": "code", "message": "bound already"}])
    uow.session.refresh(row)
    uow.emit("qrcode.bound", QrCodeBoundV1(code=row.code, batch_id=row.batch_id, equipment_id=equipment.id,
                                           customer_id=equipment.customer_id,
                                           serial_number=equipment.serial_number, bound_by=uow.ctx.actor_id))
    return row, equipment


def tenant_of_code(session, code: str) -> uuid.UUID | None:
    """The tenant a public scan belongs to: the one lookup that is not tenant-scoped (codes are
    globally unique and random)."""
    normalized = domain.normalize_code(code)
    if normalized is None:
        return None
    return session.scalar(sa.select(QrCode.tenant_id).where(QrCode.code == normalized))


def public_scan(uow: UnitOfWork, code: str, today: dt.date) -> dict:
    """What anyone scanning a sticker sees: the equipment, its warranty and recent service. No personal
    data (no customer name, contacts or addresses, no technician)."""
    row = get_code(uow, code)
    result = {"code": row.code, "printed_code": domain.printed_code(row.code), "status": row.status}
    if row.equipment_id is None:
        return result
    equipment = get_equipment(uow, row.equipment_id)
    template = get_template(uow, equipment.template_id) if equipment.template_id else None
    history = uow.session.scalars(
        sa.select(EquipmentHistory).where(EquipmentHistory.equipment_id == equipment.id,
                                          EquipmentHistory.event_type == "ticket.completed")
        .order_by(EquipmentHistory.occurred_at.desc()).limit(5))
    result["equipment"] = {
        "model": equipment.model, "name": template.name if template else None,
        "brand": template.brand if template else None,
        "serial_number": equipment.serial_number, "status": equipment.status,
        "install_date": equipment.install_date, "warranty_end": equipment.warranty_end,
        "warranty_state": domain.warranty_state(equipment.warranty_end, today),
        "next_maintenance_date": equipment.next_maintenance_date,
    }
    result["recent_service"] = [{"date": h.occurred_at.date(), "type": h.ticket_type, "summary": h.summary}
                                for h in history]
    return result


MAX_PHOTO_BYTES = 3 * 1024 * 1024


def report_fault(uow: UnitOfWork, code: str, data: FaultReportIn, today: dt.date) -> FaultReport:
    from svc_common.contracts import EquipmentFaultReportedV1
    errors = domain.check_fault_report(data.description, data.contact_phone)
    photo = None
    if data.photo_base64:
        try:
            photo = base64.b64decode(data.photo_base64, validate=True)
        except (binascii.Error, ValueError):
            errors.append({"field": "photo_base64", "message": "照片格式无效 / not a valid image"})
        else:
            if len(photo) > MAX_PHOTO_BYTES:
                errors.append({"field": "photo_base64", "message": "照片不能超过3MB / the photo must be 3 MB or less"})
            elif not _looks_like_image(photo):
                errors.append({"field": "photo_base64", "message": "照片格式无效 / not a valid image"})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    row = get_code(uow, code)
    if row.equipment_id is None:
        raise Conflict("this QR code is not bound to equipment yet", [{"field": "code", "message": "not bound"}])
    equipment = get_equipment(uow, row.equipment_id)
    customer = get_customer(uow, equipment.customer_id)
    report = FaultReport(number=uow.next_number("fault_report", "FR"), code=row.code, equipment_id=equipment.id,
                         customer_id=customer.id, description=data.description.strip(),
                         contact_phone=data.contact_phone.strip(), photo=photo,
                         photo_type=(data.photo_type or "image/jpeg") if photo else None)
    uow.session.add(report)
    uow.session.flush()
    uow.emit("equipment.fault_reported", EquipmentFaultReportedV1(
        report_id=report.id, number=report.number, equipment_id=equipment.id, customer_id=customer.id,
        customer_name=customer.name, contact_phone=report.contact_phone, description=report.description,
        model=equipment.model, serial_number=equipment.serial_number,
        under_warranty=ServiceSnapshotV1.warranty_status(equipment.warranty_end, today), has_photo=photo is not None,
        owner_id=customer.owner_id, team_id=customer.team_id))
    return report


def _looks_like_image(data: bytes) -> bool:
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def list_fault_reports(uow: UnitOfWork, equipment_id: uuid.UUID | None, offset: int, limit: int,
                       customer_id: uuid.UUID | None = None) -> tuple[list[FaultReport], int]:
    query = sa.select(FaultReport)
    if equipment_id:
        query = query.where(FaultReport.equipment_id == equipment_id)
    if customer_id:
        query = query.where(FaultReport.customer_id == customer_id)
    total = uow.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.session.scalars(query.order_by(FaultReport.created_at.desc(), FaultReport.id).offset(offset).limit(limit))
    return list(rows), total


def fault_photo(uow: UnitOfWork, report_id: uuid.UUID) -> tuple[bytes, str]:
    report = uow.get_or_404(FaultReport, report_id, "report_id", "fault report")
    if report.photo is None:
        raise NotFound("this report has no photo", [{"field": "report_id", "message": "no photo"}])
    return report.photo, report.photo_type or "image/jpeg"


# ============================================================================= reminders
def reminder_rules(uow: UnitOfWork) -> list[dict]:
    rows = {r.kind: r for r in uow.session.scalars(sa.select(ReminderRule))}
    result = []
    for kind in domain.REMINDER_KINDS:
        days, enabled = domain.DEFAULT_RULES[kind]
        row = rows.get(kind)
        result.append({"kind": kind, "days": row.days if row else days, "enabled": row.enabled if row else enabled,
                       "auto_create_order": row.auto_create_order if row else False})
    return result


def set_reminder_rule(uow: UnitOfWork, kind: str, data: ReminderRuleIn) -> dict:
    require_role(uow, ADMIN_ROLES, "configuring reminders")
    if kind not in domain.REMINDER_KINDS:
        raise NotFound(f"no reminder kind {kind}", [{"field": "kind", "message": f"one of {domain.REMINDER_KINDS}"}])
    if data.auto_create_order and kind == "warranty_expiring":
        raise field_error("auto_create_order", "only maintenance and inspection reminders create work orders")
    row = uow.session.scalar(sa.select(ReminderRule).where(ReminderRule.kind == kind))
    if row is None:
        row = ReminderRule(kind=kind)
        uow.session.add(row)
    row.days, row.enabled, row.auto_create_order = data.days, data.enabled, data.auto_create_order
    uow.session.flush()
    return next(r for r in reminder_rules(uow) if r["kind"] == kind)


def tenants_with_equipment(session) -> list[uuid.UUID]:
    return list(session.scalars(sa.select(Equipment.tenant_id).distinct()))


def evaluate_reminders(uow: UnitOfWork, today: dt.date, chunk: int = 1000, cursor: dict | None = None) -> dict:
    """Emit due reminders of this tenant, each once per (equipment, kind, due date), reading at most
    `chunk` equipment per kind and call (one transaction). Returns {"sent": {kind: count}, "cursor": ...}: call again
    with the cursor until it is None. The cursor walks each kind's dates in order, so a long backlog
    is read once, not rescanned from its start by every call.

    The claim rows (one INSERT ... ON CONFLICT DO NOTHING RETURNING per chunk) and the events commit
    together: a concurrent instance's claim of the same row waits for this transaction and then
    inserts nothing, so neither restarts nor several instances send a reminder twice."""
    from svc_common.contracts import EquipmentDueV1
    sent = {kind: 0 for kind in domain.REMINDER_KINDS}
    rules = [r for r in reminder_rules(uow) if r["enabled"]]
    if cursor is not None:  # resume at the kind (and position) where the last call stopped
        kinds = [r["kind"] for r in rules]
        rules = rules[kinds.index(cursor["kind"]):] if cursor["kind"] in kinds else []
    for rule in rules:
        kind = rule["kind"]
        column = getattr(Equipment, domain.DATE_OF_KIND[kind])
        first, last = domain.reminder_window(kind, rule["days"], today)
        claimed = sa.exists().where(ReminderSent.equipment_id == Equipment.id, ReminderSent.kind == kind,
                                    ReminderSent.due_date == column)
        query = (sa.select(Equipment.id, Equipment.customer_id, Equipment.model, Equipment.serial_number, column)
                 .where(Equipment.status == "active", column.between(first, last), ~claimed)
                 .order_by(column, Equipment.id).limit(chunk))
        if cursor is not None and cursor["kind"] == kind:
            after_date, after_id = dt.date.fromisoformat(cursor["date"]), uuid.UUID(cursor["id"])
            query = query.where(sa.or_(column > after_date, sa.and_(column == after_date, Equipment.id > after_id)))
        due = uow.session.execute(query).all()
        cursor = None
        if due:
            sent[kind] += _send_due(uow, kind, rule, due, today, EquipmentDueV1)
        if len(due) == chunk:
            last_row = due[-1]
            return {"sent": sent, "cursor": {"kind": kind, "date": last_row[4].isoformat(), "id": str(last_row[0])}}
    return {"sent": sent, "cursor": None}


def _send_due(uow: UnitOfWork, kind: str, rule: dict, due: list, today: dt.date, contract) -> int:
    table = ReminderSent.__table__
    insert = _dialect_insert(uow)
    now = utcnow()
    won = set(uow.session.scalars(
        insert(table).values([{"tenant_id": uow.ctx.tenant_id, "equipment_id": row[0], "kind": kind,
                               "due_date": row[4], "sent_at": now} for row in due])
        .on_conflict_do_nothing().returning(table.c.equipment_id)))
    if not won:
        return 0
    customers = {c.id: c for c in uow.session.scalars(
        sa.select(Customer).where(Customer.id.in_({row[1] for row in due if row[0] in won})))}
    for equipment_id, customer_id, model, serial, due_date in due:
        if equipment_id not in won:
            continue
        customer = customers[customer_id]
        contact = customer.contacts[0] if customer.contacts else None
        uow.emit(domain.EVENT_OF_KIND[kind], contract(
            equipment_id=equipment_id, customer_id=customer_id, customer_name=customer.name,
            contact_name=contact.name if contact else None, contact_phone=contact.phone if contact else None,
            model=model, serial_number=serial, due_date=due_date, days_left=(due_date - today).days,
            owner_id=customer.owner_id, team_id=customer.team_id,
            create_work_order=bool(rule["auto_create_order"]) and kind != "warranty_expiring"))
    return len(won)


def _dialect_insert(uow: UnitOfWork):
    if uow.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


# ========================================================================= import / export
def import_customers(uow: UnitOfWork, content: bytes, fmt: str) -> dict:
    """All or nothing: every row is checked (fields, custom fields, duplicates against the tenant's
    customers and within the file); one error anywhere and nothing is written, with the report."""
    from svc_common.validation import parse

    from . import tabular
    require_role(uow, EDITOR_ROLES, "importing customers")
    custom_defs = field_defs(uow, "customer")
    rows = tabular.read_rows(content, fmt, [(d.key, d.label) for d in custom_defs])
    errors, parsed = [], []
    seen_names: dict[str, int] = {}
    seen_phones: dict[str, int] = {}
    existing_names = set(uow.session.scalars(sa.select(Customer.name_key)))
    existing_phones = set(uow.session.scalars(sa.select(Contact.phone_key).where(Contact.phone_key.is_not(None))))
    for number, row in rows:
        raw = tabular.row_to_customer(row)
        row_errors = []
        try:  # custom fields checked on their own so that one row reports all its faults
            custom = domain.validate_custom_fields(custom_defs, raw.pop("custom_fields"))
        except ValidationFailed as exc:
            row_errors += exc.errors
        try:
            data = parse(CustomerIn, raw)
        except ValidationFailed as exc:
            row_errors += exc.errors
        if row_errors:
            errors += [{"row": number, "column": tabular.column_of(e["field"]), "message": e["message"]}
                       for e in row_errors]
            continue
        data.custom_fields = custom
        key = domain.name_key(data.name)
        if key in existing_names:
            errors.append({"row": number, "column": "name", "message": "a customer with this name exists"})
        elif key in seen_names:
            errors.append({"row": number, "column": "name", "message": f"same name as row {seen_names[key]}"})
        seen_names.setdefault(key, number)
        for contact in data.contacts:
            phone = domain.phone_key(contact.phone)
            if phone and phone in existing_phones:
                errors.append({"row": number, "column": "contact_phone", "message": "a customer with this phone exists"})
            elif phone and phone in seen_phones:
                errors.append({"row": number, "column": "contact_phone",
                               "message": f"same phone as row {seen_phones[phone]}"})
            if phone:
                seen_phones.setdefault(phone, number)
        parsed.append(data)
    if errors:
        raise tabular.report(errors)
    for data in parsed:
        data.allow_duplicate = True  # checked above, in bulk
        create_customer(uow, data)
    return {"imported": len(parsed)}


def export_customers(uow: UnitOfWork, fmt: str, locale: str) -> bytes:
    from . import tabular
    defs = field_defs(uow, "customer")
    header = tabular.headers([(d.key, d.label) for d in defs], locale)
    keys = [d.key for d in defs]
    customers = uow.session.scalars(sa.select(Customer).order_by(Customer.created_at, Customer.id)
                                    .execution_options(yield_per=500))
    return tabular.write(fmt, header, (tabular.customer_row(c, keys) for c in customers))
