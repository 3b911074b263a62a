"""CredentialMate backend: FastAPI app, models, database access and the logic behind the three handlers."""
