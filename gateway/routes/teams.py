"""Teams, branches (网点), service centres and external (委外) teams: the dispatch hierarchy."""
import uuid

from fastapi import APIRouter, Depends, Request

from svc_common.uow import UnitOfWork
from svc_common.validation import dump

from .. import accounts
from ..auth import Principal, current_principal, require_roles
from ..schemas import TeamIn, TeamOut, TeamPatch

router = APIRouter(tags=["teams"])


@router.post("/teams", status_code=201, response_model=TeamOut,
             summary="Create a team, branch, centre or external team (parent_id places it in the hierarchy)")
def create_team(body: TeamIn, request: Request, principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(TeamOut, accounts.create_team(uow, body))


@router.get("/teams", response_model=dict)
def list_teams(request: Request, parent_id: uuid.UUID | None = None, kind: str | None = None,
               principal: Principal = Depends(current_principal)):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        teams = accounts.list_teams(uow, parent_id, kind)
        return {"items": [dump(TeamOut, t) for t in teams], "total": len(teams)}


@router.get("/teams/{team_id}", response_model=TeamOut)
def get_team(team_id: uuid.UUID, request: Request, principal: Principal = Depends(current_principal)):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(TeamOut, accounts.get_team(uow, team_id))


@router.patch("/teams/{team_id}", response_model=TeamOut, summary="Rename, move, or change members and managers")
def update_team(team_id: uuid.UUID, body: TeamPatch, request: Request,
                principal: Principal = Depends(require_roles("admin"))):
    with UnitOfWork(request.app.state.db, principal.context()) as uow:
        return dump(TeamOut, accounts.update_team(uow, team_id, body))
