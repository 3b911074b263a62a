"""POST /api/v1/auth/login."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app import db, security, settings
from app.models import User
from goals_common import DEFAULT_GOAL, GoalValidationError, RenewalGoal, validate_goal

log = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class GoalOut(BaseModel):
    kind: str
    days_before_expiry: int


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    renewal_goal: GoalOut


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"error": "UnauthorizedError", "message": "Invalid credentials"},
        headers={"WWW-Authenticate": "Bearer"},
    )


def unavailable(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        detail={"error": "ServiceUnavailable", "message": message},
    )


def goal_for(user: User) -> RenewalGoal:
    if user.renewal_goal_days is None:
        return DEFAULT_GOAL
    try:
        return validate_goal({"days_before_expiry": user.renewal_goal_days})
    except GoalValidationError as exc:
        # A bad stored goal must not lock the user out; they get the default and we hear about it.
        log.warning("user %s has an invalid renewal goal (%s); using the default", user.id, exc)
        return DEFAULT_GOAL


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest) -> LoginResponse:
    email = body.email.strip().lower()
    try:
        sessions = db.session_factory()
    except Exception as exc:  # a secret that cannot be fetched or is malformed
        log.error("login: database configuration unavailable: %s", exc)
        raise unavailable("database configuration unavailable") from None
    if sessions is None:
        # No database means no users: every login is invalid (401, never a 5xx). The dummy check keeps
        # the timing the same as for a real wrong password.
        security.verify_password(body.password, None)
        raise unauthorized()
    try:
        with sessions() as session:
            user = session.scalar(select(User).where(User.email == email))
    except SQLAlchemyError as exc:
        log.error("login: database error: %s", exc)
        raise unavailable("database unavailable") from None
    password_ok = security.verify_password(body.password, user.hashed_password if user else None)
    if user is None or not password_ok or not user.is_active:
        raise unauthorized()
    try:
        token = security.create_access_token(subject=str(user.id), email=user.email)
        lifetime = security.token_lifetime()
    except settings.ConfigurationError as exc:
        log.error("login: %s", exc)
        raise unavailable("token signing is not configured") from None
    goal = goal_for(user)
    return LoginResponse(
        access_token=token,
        expires_in=int(lifetime.total_seconds()),
        renewal_goal=GoalOut(kind=goal.kind, days_before_expiry=goal.days_before_expiry),
    )
