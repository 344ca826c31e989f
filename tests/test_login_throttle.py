"""The admin login is throttled against password guessing (django-axes): after
AXES_FAILURE_LIMIT wrong passwords for one username from one address, even the right password
is refused for a while; other users, and logins that are not over the web, go on working."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


@pytest.fixture
def staff():
    return User.objects.create_user("guard-staff", password="right-password-1", is_staff=True,
                                    is_superuser=True)


def attempt(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password,
                               "next": "/admin/"}, REMOTE_ADDR="203.0.113.7")


def test_the_right_password_logs_in(staff):
    response = attempt(Client(), "guard-staff", "right-password-1")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_after_five_wrong_passwords_even_the_right_one_is_refused(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = attempt(client, "guard-staff", "guess")
        assert response.status_code == 200  # the form again, with its error
    assert attempt(client, "guard-staff", "guess").status_code == 429  # the fifth: locked out
    locked = attempt(client, "guard-staff", "right-password-1")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another user from the same address is not locked out.
    User.objects.create_user("other-staff", password="other-password-1", is_staff=True)
    assert attempt(Client(), "other-staff", "other-password-1").status_code == 302


def test_a_success_resets_the_count(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "guard-staff", "guess")
    assert attempt(client, "guard-staff", "right-password-1").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(Client(), "guard-staff", "guess").status_code == 200
    assert attempt(Client(), "guard-staff", "right-password-1").status_code == 302


def test_logins_without_a_request_are_not_throttled(staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        attempt(Client(), "guard-staff", "guess")
    # Client.login (tests, tools) authenticates without a request: not a guess over the web.
    assert Client().login(username="guard-staff", password="right-password-1")
