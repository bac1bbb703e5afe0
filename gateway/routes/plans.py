"""Planned and recurring work (计划任务, 保养计划; tickets service): plans with an RFC 5545 RRULE whose
work orders a timer creates exactly once."""
import uuid
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from tickets.desk.schemas import PlanIn, PlanOut

from ..deps import Limit, Offset, Services, services
from ..problems import ERRORS, Page, ok

router = APIRouter(responses=ERRORS, tags=["plans"])


class PlanOrders(BaseModel):
    past: list[dict]
    upcoming: list[dict]


class Generated(BaseModel):
    created: int


@router.post("/plans", status_code=201, responses=ok(PlanOut, 201),
             summary="A plan per customer, equipment or group of equipment (RRULE e.g. FREQ=MONTHLY;INTERVAL=3)")
async def create_plan(body: PlanIn, svc: Services = Depends(services)):
    return await svc.reply("tickets", "create_plan", status_code=201, plan=body.model_dump(mode="json"))


@router.get("/plans", responses=ok(Page[PlanOut]))
async def list_plans(customer_id: uuid.UUID | None = None, state: Literal["running", "paused", "expired"] | None = None,
                     offset: Offset = 0, limit: Limit = 50, svc: Services = Depends(services)):
    return await svc.reply("tickets", "list_plans", customer_id=customer_id, state=state, offset=offset, limit=limit)


@router.post("/plans/run-due", responses=ok(Generated),
             summary="Create the orders due now (what the timer does; safe to run beside it)")
async def run_due_plans(svc: Services = Depends(services)):
    return await svc.reply("tickets", "run_due_plans")


@router.get("/plans/{plan_id}", responses=ok(PlanOut))
async def get_plan(plan_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_plan", plan_id=plan_id)


@router.get("/plans/{plan_id}/orders", responses=ok(PlanOrders), summary="Past orders and upcoming dates")
async def get_plan_orders(plan_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "get_plan_orders", plan_id=plan_id)


@router.post("/plans/{plan_id}/pause", responses=ok(PlanOut))
async def pause_plan(plan_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "pause_plan", plan_id=plan_id, paused=True)


@router.post("/plans/{plan_id}/resume", responses=ok(PlanOut))
async def resume_plan(plan_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "pause_plan", plan_id=plan_id, paused=False)


@router.post("/plans/{plan_id}/end", responses=ok(PlanOut))
async def end_plan(plan_id: uuid.UUID, svc: Services = Depends(services)):
    return await svc.reply("tickets", "end_plan", plan_id=plan_id)
