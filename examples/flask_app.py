"""A Flask shop whose sessions live in Redis, through dce-session.

One command (uses ``REDIS_URL`` when set, else starts a throwaway redis-server)::

    python examples/flask_app.py            # serves http://127.0.0.1:5000
    python examples/flask_app.py --selftest # drives the app once and exits

Flask's own settings apply: here a permanent session lasts 7 days, in the
cookie and in Redis alike.
"""

from __future__ import annotations

import signal
import sys
from datetime import timedelta
from typing import Any

import flask
import redis
from dce_session import SessionManager
from dce_session.integrations.flask import SessionInterface
from dce_session.testing import redis_url
from markupsafe import Markup


def build(client: redis.Redis) -> flask.Flask:
    app = flask.Flask("shop")
    app.config.update(PERMANENT_SESSION_LIFETIME=timedelta(days=7),
                      SESSION_COOKIE_SAMESITE="Lax")
    SessionInterface(SessionManager(client)).init_app(app)
    session = flask.session

    @app.post("/cart/<item>")
    def add(item: str) -> Any:
        session["cart"] = [*session.get("cart", []), item]
        return {"cart": session["cart"]}

    @app.post("/login")
    def login() -> Any:
        session.permanent = True  # "remember me": 7 days
        session.dce.login({"id": 42, "name": "Ada"})  # type: ignore[attr-defined]
        flask.flash(Markup("<b>Welcome</b>"))  # Flask's own types round-trip
        return {"user": session.dce.user()}  # type: ignore[attr-defined]

    @app.get("/me")
    def me() -> Any:
        user = session.dce.user()  # type: ignore[attr-defined]
        flashes = [str(message) for message in flask.get_flashed_messages()]
        return {"user": user, "cart": session.get("cart", []), "flashes": flashes}

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return {"bye": True}

    return app


def selftest(app: flask.Flask) -> None:
    browser = app.test_client()
    assert browser.post("/cart/apple").json == {"cart": ["apple"]}
    assert browser.post("/login").json == {"user": {"id": 42, "name": "Ada"}}
    me = browser.get("/me").json
    assert me is not None
    assert me["user"] == {"id": 42, "name": "Ada"}
    assert me["cart"] == ["apple"]
    assert me["flashes"] == ["<b>Welcome</b>"]
    assert browser.post("/logout").json == {"bye": True}
    assert browser.get("/me").json == {"user": None, "cart": [], "flashes": []}
    print("flask example: ok")


def main() -> None:
    # Ctrl-C or SIGTERM: leave through the `with` blocks, so the throwaway Redis stops too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with redis_url() as url, redis.Redis.from_url(url) as client:
        app = build(client)
        if "--selftest" in sys.argv:
            selftest(app)
        else:
            app.run(host="127.0.0.1", port=5000)


if __name__ == "__main__":
    main()
