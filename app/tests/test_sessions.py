"""Sessions: signed cookies still work; requests without a cookie skip the signing set-up."""

from __future__ import annotations

from flask import session

from lbapp.factory import CookieSessions


def test_the_app_uses_the_cheap_session_interface(app):
    assert isinstance(app.session_interface, CookieSessions)


def test_a_request_without_a_session_cookie_builds_no_serializer(app, client, monkeypatch):
    def refuse(_app):
        raise AssertionError("a signing serializer was built for a request without a cookie")

    monkeypatch.setattr(app.session_interface, "get_signing_serializer", refuse)
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200
    with app.test_request_context("/"):
        opened = app.session_interface.open_session(app, app.request_class({"HTTP_COOKIE": ""}))
        assert opened is not None and dict(opened) == {} and not opened.modified


def test_a_signed_session_cookie_is_still_read_and_a_forged_one_is_not(app):
    interface = app.session_interface
    signed = interface.get_signing_serializer(app).dumps({"user": "ops"})
    name = interface.get_cookie_name(app)
    with app.test_request_context("/", headers={"Cookie": f"{name}={signed}"}):
        assert session["user"] == "ops"
    forged = signed[:-4] + ("AAAA" if not signed.endswith("AAAA") else "BBBB")
    with app.test_request_context("/", headers={"Cookie": f"{name}={forged}"}):
        assert "user" not in session


def test_without_a_secret_key_flask_falls_back_to_its_null_session(make_app):
    app = make_app()
    app.secret_key = None
    bare_request = app.request_class({"HTTP_COOKIE": ""})
    with app.test_request_context("/"):
        assert app.session_interface.open_session(app, bare_request) is None
