"""One thin router per endpoint group; :data:`ROUTERS` is the order the app includes them in.

Each handler only validates the request (pydantic), checks the key, sets the deadline, calls
:class:`~llmrec.serving.service.RecService` and serialises; errors are raised and answered in
OpenAI's envelope by :mod:`llmrec.serving.http_shared`.
"""

from __future__ import annotations

from llmrec.serving.routers import chat, health, models, recommend, web

ROUTERS = (health.router, models.router, recommend.router, chat.router, web.router)
