"""Bridge, HTTP: the one HTTP server inside ``netcortex run`` — API, webhooks, metrics.

``create_app(ApiContext)`` builds the FastAPI app (``app.py`` lists the routes),
``HttpServer`` serves it under uvicorn in the engine's own event loop
(``server.py``). ``Engine`` (``netcortex.app``) fills the ``ApiContext`` and owns
the server's lifecycle; nothing here imports ``netcortex.app``.

Part of ``bridge`` (the edge): may import everything but ``netcortex.app``.
"""

from netcortex.bridge.http.app import create_app
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.server import HttpServer

__all__ = ["ApiContext", "HttpServer", "create_app"]
