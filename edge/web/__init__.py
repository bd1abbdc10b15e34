"""The operator's web page: a live view of the sorter, today's counts, health, "classify a photo", and labelling
the kept frames (Teach), as one static page over a small JSON API (Starlette, served by uvicorn in a background
thread).

    state.py     LiveState: the loop observer that keeps the latest item, its frame and the camera's frame rate
    queries.py   RecordsView: read-only queries of the item database (today's counts, recent items, latencies,
                 the Teach tab's frames and labels)
    auth.py      TokenGate: the optional access token (constant-time comparison)
    app.py       create_app: the routes and the JSON API (the labels are its only writes)
    server.py    WebServer: binds the port at start, serves in a daemon thread, stops on close
"""

from edge.web.server import WebServer
from edge.web.state import LiveState

__all__ = ["LiveState", "WebServer"]
