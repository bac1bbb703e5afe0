"""Knowledge base / fault library (知识库, 故障库) and announcements (通知公告) with read receipts."""
import secrets
import uuid

import sqlalchemy as sa

from svc_common.db import insert_if_absent, utcnow
from svc_common.errors import Forbidden, NotFound, field_error
from svc_common.uow import UnitOfWork
from tickets import handlers as tickets
from tickets.models import Technician

from . import domain
from .handlers import _attachments, get_settings
from .models import Announcement, AnnouncementRead, Article, ArticleLink
from .schemas import AnnouncementIn, ArticleIn, ArticlePatch


def _index(a: Article) -> None:
    """Free text, then one `\n<key>:<value>\n` line per tag, fault code and model: exact-value filters
    are a LIKE on this column too (JSON columns store Chinese escaped on SQLite, so they cannot)."""
    marks = [f"{key}:{v}" for key, values in (("tag", a.tags), ("fc", a.fault_codes), ("pm", a.product_models))
             for v in values or []]
    a.search_text = domain.search_text(a.title, a.category, a.fault_type, a.symptom, a.solution) + \
        "\n" + "\n".join(marks).lower() + "\n"


def _like(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _has(key: str, value: str):
    return Article.search_text.like(f"%\n{key}:{_like(value)}\n%", escape="\\")


def create_article(uow: UnitOfWork, data: ArticleIn, storage=None) -> Article:
    """Staff write articles (a technician shares a fix); with approval on, the desk publishes them."""
    reviewed = get_settings(uow).kb_approval_required and uow.ctx.actor_role not in domain.DESK_ROLES
    files = _attachments(uow, data.attachments, storage) if data.attachments else []
    row = Article(**data.model_dump(exclude={"attachments"}), attachments=files,
                  status="pending" if reviewed else "published", author_id=uow.ctx.actor_id, created_at=utcnow())
    _index(row)
    uow.session.add(row)
    uow.session.flush()
    return row


def get_article(uow: UnitOfWork, article_id: uuid.UUID) -> Article:
    row = uow.get_or_404(Article, article_id, "article_id", "article")
    if row.status != "published" and uow.ctx.actor_role not in domain.DESK_ROLES and row.author_id != uow.ctx.actor_id:
        raise NotFound(f"article {article_id} not found", [{"field": "article_id", "message": "not found"}])
    return row


def update_article(uow: UnitOfWork, article_id: uuid.UUID, data: ArticlePatch) -> Article:
    row = get_article(uow, article_id)
    if uow.ctx.actor_role not in domain.DESK_ROLES and row.author_id != uow.ctx.actor_id:
        raise Forbidden("only the author or the desk may edit an article")
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(row, name, value)
    if get_settings(uow).kb_approval_required and uow.ctx.actor_role not in domain.DESK_ROLES:
        row.status = "pending"
    _index(row)
    uow.session.flush()
    return row


def attachment(uow: UnitOfWork, article_id: uuid.UUID, index: int, storage) -> tuple[dict, bytes]:
    row = get_article(uow, article_id)
    if not 0 <= index < len(row.attachments or []):
        raise NotFound("no such attachment", [{"field": "index", "message": "not found"}])
    found = row.attachments[index]
    return found, storage.get(found["storage_key"])


def review_article(uow: UnitOfWork, article_id: uuid.UUID, approve: bool, note: str | None) -> Article:
    domain.require_desk(uow.ctx.actor_role)
    row = get_article(uow, article_id)
    if not approve and not note:
        raise field_error("note", "a rejection needs a note")
    row.status, row.reviewed_by, row.review_note = ("published" if approve else "rejected"), uow.ctx.actor_id, note
    uow.session.flush()
    return row


def share_article(uow: UnitOfWork, article_id: uuid.UUID, shared: bool) -> Article:
    domain.require_desk(uow.ctx.actor_role)
    row = get_article(uow, article_id)
    if shared and row.status != "published":
        raise field_error("article_id", "only a published article can be shared")
    row.share_token = (row.share_token or secrets.token_urlsafe(18)) if shared else None
    uow.session.flush()
    return row


def public_article(session, token: str) -> Article:
    row = session.scalar(sa.select(Article).where(Article.share_token == token, Article.status == "published"))
    if row is None:
        raise NotFound("this shared article is unknown", [{"field": "token", "message": "not found"}])
    return row


def search_articles(uow: UnitOfWork, q: str | None = None, category: str | None = None,
                    fault_code: str | None = None, product_model: str | None = None, tag: str | None = None,
                    status: str | None = None, offset: int = 0, limit: int = 50) -> tuple[list[Article], int]:
    """Every word of `q` must appear somewhere in the article (Chinese text matches as substrings)."""
    query = sa.select(Article)
    if uow.ctx.actor_role in domain.DESK_ROLES:
        if status:
            query = query.where(Article.status == status)
    else:
        query = query.where(sa.or_(Article.status == "published", Article.author_id == uow.ctx.actor_id))
    for word in (q or "").split():
        query = query.where(Article.search_text.like(f"%{_like(word)}%", escape="\\"))
    if category:
        query = query.where(Article.category == category)
    for key, value in (("fc", fault_code), ("pm", product_model), ("tag", tag)):
        if value:
            query = query.where(_has(key, value))
    total = uow.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = uow.session.scalars(query.order_by(Article.updated_at.desc(), Article.id).offset(offset).limit(limit))
    return list(rows), total


def categories(uow: UnitOfWork) -> list[dict]:
    rows = uow.session.execute(sa.select(Article.category, sa.func.count()).where(Article.status == "published")
                               .group_by(Article.category).order_by(Article.category))
    return [{"category": c, "count": n} for c, n in rows]


def link_article(uow: UnitOfWork, article_id: uuid.UUID, ticket_id: uuid.UUID) -> Article:
    row = get_article(uow, article_id)
    tickets.get_ticket(uow, ticket_id)
    insert_if_absent(uow.session, ArticleLink.__table__, {
        "id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "article_id": row.id, "ticket_id": ticket_id,
        "linked_by": uow.ctx.actor_id, "at": utcnow()})
    return row


def articles_of_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> list[Article]:
    tickets.get_ticket(uow, ticket_id)
    return list(uow.session.scalars(sa.select(Article).join(ArticleLink, ArticleLink.article_id == Article.id)
                                    .where(ArticleLink.ticket_id == ticket_id).order_by(Article.title)))


def suggest_for_ticket(uow: UnitOfWork, ticket_id: uuid.UUID, limit: int = 10) -> list[Article]:
    """Published articles for the order's fault: its fault code / fault type fields, else its model."""
    ticket = tickets.get_ticket(uow, ticket_id)
    custom = ticket.custom_fields or {}
    fault_code = custom.get("fault_code")
    fault_type = custom.get("fault_type")
    query = sa.select(Article).where(Article.status == "published")
    matches = []
    if fault_code:
        matches.append(_has("fc", str(fault_code)))
    if fault_type:
        matches.append(Article.fault_type == str(fault_type))
    if ticket.equipment_model:
        matches.append(_has("pm", ticket.equipment_model))
    if not matches:
        return []
    return list(uow.session.scalars(query.where(sa.or_(*matches)).order_by(Article.updated_at.desc()).limit(limit)))


# -- announcements ---------------------------------------------------------------------------------------

def create_announcement(uow: UnitOfWork, data: AnnouncementIn) -> Announcement:
    domain.require_desk(uow.ctx.actor_role)
    if data.audience == "teams" and not data.team_ids:
        raise field_error("team_ids", "name at least one team")
    if data.audience == "roles" and not data.roles:
        raise field_error("roles", "name at least one role")
    row = Announcement(title=data.title, body=data.body, audience=data.audience,
                       team_ids=[str(t) for t in data.team_ids], roles=list(data.roles), author_id=uow.ctx.actor_id,
                       published_at=utcnow())
    uow.session.add(row)
    uow.session.flush()
    # notify puts it in every addressee's inbox: committed with the announcement, or not at all
    uow.emit("announcement.published", {
        "announcement_id": row.id, "title": row.title, "summary": row.body[:200], "audience": row.audience,
        "team_ids": row.team_ids, "roles": row.roles, "author_id": row.author_id})
    return row


def _my_teams(uow: UnitOfWork) -> set[str]:
    me = uow.session.get(Technician, uow.ctx.actor_id) if uow.ctx.actor_id else None
    return set(me.team_ids or []) if me else set()


def _addressed_to_me(row: Announcement, role: str | None, teams: set[str]) -> bool:
    if row.audience == "all" or role == "admin":
        return True
    if row.audience == "roles":
        return role in row.roles
    return bool(teams & set(row.team_ids))


def my_announcements(uow: UnitOfWork, unread_only: bool = False) -> list[dict]:
    teams = _my_teams(uow)
    read = set(uow.session.scalars(sa.select(AnnouncementRead.announcement_id)
                                   .where(AnnouncementRead.user_id == uow.ctx.actor_id)))
    rows = uow.session.scalars(sa.select(Announcement).order_by(Announcement.published_at.desc()).limit(500))
    out = []
    for row in rows:
        if _addressed_to_me(row, uow.ctx.actor_role, teams) and not (unread_only and row.id in read):
            out.append({"announcement": row, "read": row.id in read})
    return out


def mark_read(uow: UnitOfWork, announcement_id: uuid.UUID) -> Announcement:
    row = uow.get_or_404(Announcement, announcement_id, "announcement_id", "announcement")
    if not _addressed_to_me(row, uow.ctx.actor_role, _my_teams(uow)):
        raise NotFound(f"announcement {announcement_id} not found",
                       [{"field": "announcement_id", "message": "not found"}])
    if uow.ctx.actor_id is None:
        raise Forbidden("a read receipt needs a user")
    insert_if_absent(uow.session, AnnouncementRead.__table__, {
        "id": uuid.uuid4(), "tenant_id": uow.ctx.tenant_id, "announcement_id": row.id,
        "user_id": uow.ctx.actor_id, "read_at": utcnow()})
    return row


def read_receipts(uow: UnitOfWork, announcement_id: uuid.UUID) -> dict:
    """Who read it, and who of the audience (known to the roster) has not yet."""
    domain.require_desk(uow.ctx.actor_role)
    row = uow.get_or_404(Announcement, announcement_id, "announcement_id", "announcement")
    reads = list(uow.session.scalars(sa.select(AnnouncementRead).where(AnnouncementRead.announcement_id == row.id)
                                     .order_by(AnnouncementRead.read_at)))
    read_ids = {r.user_id for r in reads}
    audience = [m for m in uow.session.scalars(sa.select(Technician).where(Technician.active.is_(True)))
                if _addressed_to_me(row, m.role, set(m.team_ids or []))]
    return {"read": [{"user_id": str(r.user_id), "read_at": r.read_at.isoformat()} for r in reads],
            "unread": [{"user_id": str(m.user_id), "name": m.name} for m in audience if m.user_id not in read_ids],
            "read_count": len(reads), "audience_count": len(audience)}
