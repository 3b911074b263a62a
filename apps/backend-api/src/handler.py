"""Lambda entry point of the API function (handler `handler.lambda_handler`).

Importing the FastAPI app here, at module level, is deliberate: a broken import fails the function's init
(which the deployment alarms and the synth-time check catch) instead of the first request.
"""

from __future__ import annotations

from mangum import Mangum

from app.logs import configure_logging
from app.main import app

configure_logging()

# lifespan="off": the app has no startup work; everything (secret, engine) is created lazily on first use.
lambda_handler = Mangum(app, lifespan="off")
