"""Knowledge base / fault library (知识库, 故障库) and announcements (通知公告) — tickets service."""
import base64
import uuid
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from tickets.desk.schemas import AnnouncementIn, AnnouncementOut, ArticleIn, ArticleOut, ArticlePatch, OptionalNoteIn

from svc_common.context import correlation_id_var

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok

router = APIRouter(responses=ERRORS, tags=["knowledge base"])


class Items(BaseModel):
    items: list[dict]


def _body(model: BaseModel | None) -> dict | None:
    return model.model_dump(mode="json") if model is not None else None


@router.post("/knowledge/articles", status_code=201, responses=ok(ArticleOut, 201))
async def create_article(body: ArticleIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_article", status_code=201, article=_body(body))


@router.get("/knowledge/articles", responses=ok(Page[ArticleOut]),
            summary="Search (every word, Chinese too) and filter by category, fault code, product model, tag")
async def search_articles(q: str | None = Query(None, max_length=200), category: str | None = None,
                          fault_code: str | None = None, product_model: str | None = None, tag: str | None = None,
                          status: str | None = None, offset: Offset = 0, limit: Limit = 50,
                          svc: Services = Depends(services)):
    return await svc.reply("tickets", "search_articles", q=q, category=category, fault_code=fault_code,
                           product_model=product_model, tag=tag, status=status, offset=offset, limit=limit)


@router.get("/knowledge/categories", responses=ok(Items))
async def article_categories(svc: Services = Depends(services)):
    return await svc.reply("tickets", "article_categories")


@router.get("/knowledge/articles/{article_id}", responses=ok(ArticleOut))
async def get_article(article_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_article", article_id=article_id)


@router.get("/knowledge/articles/{article_id}/attachments/{index}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "The file as uploaded"}})
async def get_article_attachment(article_id: uuid.UUID, index: int, svc: Services = Depends(services)):
    result = await svc.call("tickets", "get_article_attachment", article_id=article_id, index=index)
    return Response(base64.b64decode(result["content_base64"]), media_type=result["content_type"],
                    headers={"Content-Disposition": f'attachment; filename="{quote(result["filename"])}"'})


@router.patch("/knowledge/articles/{article_id}", responses=ok(ArticleOut))
async def update_article(article_id: uuid.UUID, body: ArticlePatch, svc: Services = Depends(services)):
    return await svc.reply("tickets", "update_article", article_id=article_id,
                           changes=body.model_dump(mode="json", exclude_unset=True))


@router.post("/knowledge/articles/{article_id}/approve", responses=ok(ArticleOut))
async def approve_article(article_id: uuid.UUID, body: OptionalNoteIn | None = None,
                          svc: Services = Depends(services)):
    return await svc.reply("tickets", "review_article", article_id=article_id, approve=True, review=_body(body))


@router.post("/knowledge/articles/{article_id}/reject", responses=ok(ArticleOut))
async def reject_article(article_id: uuid.UUID, body: OptionalNoteIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "review_article", article_id=article_id, approve=False, review=_body(body))


@router.post("/knowledge/articles/{article_id}/share", responses=ok(ArticleOut), summary="A public sharing link")
async def share_article(article_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "share_article", article_id=article_id, shared=True)


@router.delete("/knowledge/articles/{article_id}/share", responses=ok(ArticleOut))
async def unshare_article(article_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "share_article", article_id=article_id, shared=False)


@router.get("/public/knowledge/{token}", tags=["public"], summary="No login: a shared article")
async def public_article(token: str, request: Request):
    return await request.app.state.rpc.call("tickets", "public_article", token=token,
                                            context={"correlation_id": correlation_id_var.get()})


@router.post("/work-orders/{ticket_id}/articles/{article_id}", responses=ok(ArticleOut),
             summary="Link an article to a work order")
async def link_article(ticket_id: uuid.UUID, article_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "link_article", article_id=article_id, ticket_id=ticket_id)


@router.get("/work-orders/{ticket_id}/articles", responses=ok(Items),
            summary="Articles linked to the order, or suggested for its fault code / fault type / model")
async def work_order_articles(ticket_id: uuid.UUID, suggest: bool = False, svc: Services = Depends(services)):
    return await svc.reply("tickets", "ticket_articles", ticket_id=ticket_id, suggest=suggest)


# -- announcements --------------------------------------------------------------------------------------

@router.post("/announcements", status_code=201, responses=ok(AnnouncementOut, 201),
             summary="To everyone, some teams or some roles")
async def create_announcement(body: AnnouncementIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_announcement", status_code=201, announcement=_body(body))


@router.get("/announcements", responses=ok(Items), summary="Mine, with read flags")
async def my_announcements(unread_only: bool = False, svc: Services = Depends(services)):
    return await svc.reply("tickets", "my_announcements", unread_only=unread_only)


@router.post("/announcements/{announcement_id}/read", responses=ok(AnnouncementOut))
async def read_announcement(announcement_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "read_announcement", announcement_id=announcement_id)


@router.get("/announcements/{announcement_id}/receipts", responses=ok(dict), summary="Read receipts")
async def announcement_receipts(announcement_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "announcement_receipts", announcement_id=announcement_id)
