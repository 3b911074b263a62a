"""The FastAPI application (served on Lambda by handler.py through Mangum)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import settings
from app.routes import auth, health

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_HEADERS = ["Authorization", "Content-Type"]


def create_app() -> FastAPI:
    """Build the app; reads CORS_ALLOWED_ORIGINS now (environment only, no network)."""
    application = FastAPI(title="CredentialMate API", docs_url=None, redoc_url=None)
    application.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins(),
        allow_methods=CORS_METHODS,
        allow_headers=CORS_HEADERS,
        # Bearer tokens in the Authorization header, no cookies: credentials mode is not needed.
        allow_credentials=False,
    )
    application.include_router(health.router)
    application.include_router(auth.router, prefix="/api/v1/auth")
    return application


app = create_app()
