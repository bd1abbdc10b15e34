"""The web page's HTTP server: uvicorn (pure-Python h11, asyncio) in a daemon thread. The port is bound at
construction, so a busy port or a bad address fails at start with one line; ``close()`` stops it."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from edge.config import Settings
from edge.errors import PortError
from edge.web.app import create_app
from edge.web.bounds import bounded_protocol, counts
from edge.web.model_api import Restart
from edge.web.state import LiveState

logger = logging.getLogger(__name__)

HEALTH = "/api/health"  # served even on a connection over the limit


class WebServer:
    """Serves the page of ``settings`` (and of a running sorter's ``live`` state, which ``restart`` restarts after
    a model change) on ``web.host:web.port`` (port 0: any free port, see ``url``). A context manager."""

    def __init__(self, settings: Settings, live: LiveState | None = None, restart: Restart | None = None) -> None:
        host, port = settings.web.host, settings.web.port
        try:
            self._socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except OSError as exc:
            raise PortError(f"web: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://[{bound_host}]:{bound_port}/" if ":" in bound_host else f"http://{bound_host}:{bound_port}/"
        self.app = create_app(settings, live, restart)
        web = settings.web
        http = bounded_protocol(web.max_connections, web.request_timeout_s, always_served=HEALTH)
        config = uvicorn.Config(self.app, http=http, ws="none", loop="asyncio", lifespan="off", log_config=None,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=2, backlog=128)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="web",
                                        daemon=True)
        self._thread.start()
        logger.info("web page at %s%s", self.url, " (token required)" if settings.web.token else "")

    @property
    def open_connections(self) -> int:
        """Connections served now (bounded by ``web.max_connections``)."""
        return counts(self._server.server_state.connections)[0]

    @property
    def refused_connections(self) -> int:
        """Connections open now over the limit, their requests answered 503 (``edge.web.bounds``)."""
        return counts(self._server.server_state.connections)[1]

    def close(self) -> None:
        """Stop serving (open requests get up to 2 s), release the port, the page's model and its connection to the
        records; safe twice."""
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()
        self.app.state.api.close()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
