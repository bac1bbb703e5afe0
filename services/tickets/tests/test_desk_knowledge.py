"""Knowledge base (知识库/故障库) and announcements (通知公告) with read receipts."""
import uuid
from decimal import Decimal

import pytest

from svc_common.errors import Forbidden, NotFound, ValidationFailed
from svc_common.testing import context, outbox_events, uow
from svc_common.validation import parse
from tickets import handlers as tickets
from tickets.desk import knowledge
from tickets.desk.handlers import update_settings
from tickets.desk.schemas import AnnouncementIn, ArticleIn, ArticlePatch, DeskSettingsIn
from tickets.schemas import TicketIn

ARTICLE = {"title": "格力空调 E1 高压保护", "category": "空调", "fault_type": "制冷故障", "symptom": "外机不启动，显示 E1",
           "solution": "检查冷凝器是否脏堵，清洗后复位", "tags": ["高压", "清洗"], "fault_codes": ["E1"],
           "product_models": ["格力 KFR-72LW"]}


def write(db, ctx, **fields):
    with uow(db, ctx) as u:
        return knowledge.create_article(u, parse(ArticleIn, {**ARTICLE, **fields}))


def search(db, ctx, **filters):
    with uow(db, ctx) as u:
        return [a.title for a in knowledge.search_articles(u, **filters)[0]]


def test_search_in_chinese_and_by_fault_code_model_and_tag(db, office):
    write(db, office)
    write(db, office, title="美的风管机漏水", category="空调", fault_codes=["P3"], product_models=["美的 GC"],
          tags=["排水"], solution="疏通排水管", symptom=None, fault_type="漏水")
    assert search(db, office, q="冷凝器") == ["格力空调 E1 高压保护"]
    assert search(db, office, q="空调 漏水") == ["美的风管机漏水"]
    assert search(db, office, q="e1") == ["格力空调 E1 高压保护"]  # case-insensitive
    assert search(db, office, fault_code="P3") == ["美的风管机漏水"]
    assert search(db, office, product_model="格力 KFR-72LW") == ["格力空调 E1 高压保护"]
    assert search(db, office, tag="清洗") == ["格力空调 E1 高压保护"]
    with uow(db, office) as u:
        assert knowledge.categories(u) == [{"category": "空调", "count": 2}]


def test_approval_when_the_tenant_asks_for_it(db, office):
    with uow(db, office) as u:
        update_settings(u, DeskSettingsIn(kb_approval_required=True))
    author = context(tenant_id=office.tenant_id, role="technician")
    reader = context(tenant_id=office.tenant_id, role="technician")
    article = write(db, author)
    assert article.status == "pending"
    assert search(db, reader) == [] and search(db, author) == [ARTICLE["title"]]
    with pytest.raises(NotFound), uow(db, reader) as u:
        knowledge.get_article(u, article.id)
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        knowledge.review_article(u, article.id, False, None)
    with uow(db, office) as u:
        assert knowledge.review_article(u, article.id, True, None).status == "published"
    assert search(db, reader) == [ARTICLE["title"]]
    with pytest.raises(Forbidden), uow(db, reader) as u:
        knowledge.update_article(u, article.id, ArticlePatch(title="改"))
    with uow(db, author) as u:  # the author's edit goes back to review
        assert knowledge.update_article(u, article.id, ArticlePatch(solution="新方案")).status == "pending"


def test_public_sharing_link(db, office):
    article = write(db, office)
    with uow(db, office) as u:
        token = knowledge.share_article(u, article.id, True).share_token
    with db.session(None) as s:
        assert knowledge.public_article(s, token).title == ARTICLE["title"]
    with uow(db, office) as u:
        knowledge.share_article(u, article.id, False)
    with pytest.raises(NotFound), db.session(None) as s:
        knowledge.public_article(s, token)


def test_linking_to_work_orders_and_suggestions_by_fault(db, office):
    article = write(db, office)
    write(db, office, title="无关文章", fault_codes=["X9"], product_models=[])
    customer = uuid.uuid4()
    with uow(db, office) as u:
        ticket = tickets.create_ticket(u, TicketIn(type="repair", customer_id=customer, description="E1"), {
            "customer_id": customer, "customer_name": "客户", "contact_name": None, "contact_phone": None,
            "address": None, "latitude": Decimal("31"), "longitude": Decimal("121"), "equipment_id": None,
            "equipment_model": "格力 KFR-72LW", "serial_number": None, "under_warranty": None})
    with uow(db, office) as u:
        assert [a.id for a in knowledge.suggest_for_ticket(u, ticket.id)] == [article.id]
        knowledge.link_article(u, article.id, ticket.id)
        knowledge.link_article(u, article.id, ticket.id)  # once
    with uow(db, office) as u:
        assert [a.id for a in knowledge.articles_of_ticket(u, ticket.id)] == [article.id]


def test_announcements_reach_their_audience_with_read_receipts(db, office, roster):
    team = roster.team("华东网点", members=())
    tech_in_team, other_tech = roster.user("张工"), roster.user("赵工")
    roster.update_team(team, "华东网点", members=[tech_in_team])
    keeper = roster.user("库管", role="warehouse_manager")
    with uow(db, office) as u:
        everyone = knowledge.create_announcement(u, AnnouncementIn(title="春节值班", body="安排如下"))
        to_team = knowledge.create_announcement(u, AnnouncementIn(title="网点培训", body="周五", audience="teams",
                                                                  team_ids=[team]))
        to_keepers = knowledge.create_announcement(u, AnnouncementIn(title="盘点", body="月底", audience="roles",
                                                                     roles=["warehouse_manager"]))
    with pytest.raises(ValidationFailed), uow(db, office) as u:
        knowledge.create_announcement(u, AnnouncementIn(title="x", body="y", audience="teams"))
    with pytest.raises(Forbidden), uow(db, roster.as_(other_tech)) as u:
        knowledge.create_announcement(u, AnnouncementIn(title="x", body="y"))
    # each published one (and only those) is an event for notify, committed with it
    published = [e for e in outbox_events(db) if e["type"] == "announcement.published"]
    assert [(e["data"]["title"], e["data"]["audience"], e["data"]["team_ids"], e["data"]["roles"])
            for e in published] == [("春节值班", "all", [], []), ("网点培训", "teams", [str(team)], []),
                                    ("盘点", "roles", [], ["warehouse_manager"])]
    assert published[0]["data"]["announcement_id"] == str(everyone.id) and published[0]["data"]["summary"] == "安排如下"
    assert published[0]["data"]["author_id"] == str(office.actor_id)

    def titles(user, role="technician", unread_only=False):
        with uow(db, roster.as_(user, role)) as u:
            return [(x["announcement"].title, x["read"]) for x in knowledge.my_announcements(u, unread_only)]
    assert sorted(titles(tech_in_team)) == [("春节值班", False), ("网点培训", False)]
    assert titles(other_tech) == [("春节值班", False)]
    assert sorted(titles(keeper, "warehouse_manager")) == [("春节值班", False), ("盘点", False)]
    with uow(db, roster.as_(tech_in_team)) as u:
        knowledge.mark_read(u, everyone.id)
    with uow(db, roster.as_(tech_in_team)) as u:
        knowledge.mark_read(u, everyone.id)  # a second read changes nothing
    assert titles(tech_in_team, unread_only=True) == [("网点培训", False)]
    with pytest.raises(NotFound), uow(db, roster.as_(other_tech)) as u:
        knowledge.mark_read(u, to_team.id)
    with uow(db, office) as u:
        receipts = knowledge.read_receipts(u, everyone.id)
        assert receipts["read_count"] == 1 and receipts["audience_count"] == 3
        assert {r["name"] for r in receipts["unread"]} == {"赵工", "库管"}
        assert knowledge.read_receipts(u, to_keepers.id)["audience_count"] == 1
    with pytest.raises(Forbidden), uow(db, roster.as_(other_tech)) as u:
        knowledge.read_receipts(u, everyone.id)


def test_articles_carry_attachments(db, office, tmp_path):
    import base64

    from tickets.storage import LocalStorage
    storage = LocalStorage(tmp_path / "files")
    data = parse(ArticleIn, {**ARTICLE, "attachments": [{"filename": "接线图.pdf", "content_type": "application/pdf",
                                                         "content_base64": base64.b64encode(b"%PDF-1.4 x").decode()}]})
    with uow(db, office) as u:
        article = knowledge.create_article(u, data, storage)
    from tickets.desk.schemas import ArticleOut
    shown = ArticleOut.model_validate(article).model_dump(mode="json")["attachments"]
    assert shown == [{"filename": "接线图.pdf", "content_type": "application/pdf", "size": 10}]  # no storage key
    with uow(db, office) as u:
        found, content = knowledge.attachment(u, article.id, 0, storage)
    assert content == b"%PDF-1.4 x" and found["filename"] == "接线图.pdf"
    with pytest.raises(NotFound), uow(db, office) as u:
        knowledge.attachment(u, article.id, 1, storage)


def test_an_announcement_summary_is_the_start_of_its_body(db, office):
    with uow(db, office) as u:
        knowledge.create_announcement(u, AnnouncementIn(title="长通知", body="通" * 500))
    event = [e for e in outbox_events(db) if e["type"] == "announcement.published"][0]
    assert event["data"]["summary"] == "通" * 200
