"""A one-file Django project whose sessions live in Redis, through dce-session.

One command (uses ``REDIS_URL`` when set, else starts a throwaway redis-server)::

    python examples/django_app.py            # serves http://127.0.0.1:8001
    python examples/django_app.py --selftest # drives the app once and exits

What it shows: ``SESSION_ENGINE = "dce_session.integrations.django"``, Django's
own settings (``SESSION_COOKIE_AGE`` is the Redis TTL), ``cycle_key()`` at
login (what ``django.contrib.auth.login`` calls) and ``flush()`` at logout.
"""

from __future__ import annotations

import signal
import sys

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path


def add(request: HttpRequest, item: str) -> JsonResponse:
    request.session["cart"] = [*request.session.get("cart", []), item]
    return JsonResponse({"cart": request.session["cart"]})


def login(request: HttpRequest) -> JsonResponse:
    request.session.cycle_key()  # a new sid for the same data: one atomic step
    request.session["user"] = "ada"
    return JsonResponse({"user": "ada"})


def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.session.get("user"),
                         "cart": request.session.get("cart", [])})


def logout(request: HttpRequest) -> JsonResponse:
    request.session.flush()
    return JsonResponse({"bye": True})


urlpatterns = [path("cart/<str:item>", add), path("login", login), path("me", me),
               path("logout", logout)]


def configure(url: str) -> None:
    settings.configure(
        DEBUG=False, SECRET_KEY="example-only", ROOT_URLCONF=__name__, USE_TZ=True,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        MIDDLEWARE=["dce_session.integrations.django.SessionMiddleware"],
        SESSION_ENGINE="dce_session.integrations.django",
        SESSION_COOKIE_AGE=7 * 24 * 3600,  # a week: the cookie and the Redis TTL
        DCE_SESSION={"url": url},
    )
    django.setup()


def selftest() -> None:
    from django.test import Client

    browser = Client()
    assert browser.post("/cart/apple").json() == {"cart": ["apple"]}
    first = browser.cookies["sessionid"].value
    assert browser.post("/login").json() == {"user": "ada"}
    assert browser.cookies["sessionid"].value != first
    assert browser.get("/me").json() == {"user": "ada", "cart": ["apple"]}
    assert browser.post("/logout").json() == {"bye": True}
    assert browser.get("/me").json() == {"user": None, "cart": []}
    print("django example: ok")


def main() -> None:
    # Ctrl-C or SIGTERM: leave through the `with` blocks, so the throwaway Redis stops too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from dce_session.testing import redis_url

    with redis_url() as url:
        configure(url)
        if "--selftest" in sys.argv:
            selftest()
        else:
            from django.core.management import execute_from_command_line

            execute_from_command_line([sys.argv[0], "runserver", "127.0.0.1:8001", "--noreload"])


if __name__ == "__main__":
    main()
