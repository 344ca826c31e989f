from django.contrib.staticfiles import finders


def test_health_answers_ok_when_the_database_answers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}



def test_the_home_page_points_a_newcomer_at_the_admin_the_api_and_the_demo(client, settings):
    settings.INBOX_DEMO_PAGE = True
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    for link in ('href="/admin/"', 'href="/api/docs/"', 'href="/demo/inbox/"',
                 'href="/readyz"', 'rel="icon"'):
        assert link in page
    settings.INBOX_DEMO_PAGE = False
    assert 'href="/demo/inbox/"' not in client.get("/").content.decode()


def test_favicon_redirects_to_the_svg_icon_that_exists(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("clarion/favicon.svg")
    assert finders.find("clarion/favicon.svg").endswith("static/clarion/favicon.svg")


def test_admin_pages_carry_the_icon(admin_client):
    assert 'rel="icon"' in admin_client.get("/admin/").content.decode()


def test_the_admin_speaks_its_language_under_a_script_prefix_too(client):
    """Behind a proxy that mounts Clarion under a path (SCRIPT_NAME), path_info has no prefix
    while reverse() has it: the admin must still be told apart from the other pages."""
    from django.urls import set_script_prefix

    from clarion.locale import is_admin_path

    set_script_prefix("/clarion/")
    try:
        assert is_admin_path("/admin/") and is_admin_path("/admin/login/")
        assert not is_admin_path("/api/v1/tenants")
    finally:
        set_script_prefix("/")
    response = client.get("/admin/login/", SCRIPT_NAME="/clarion", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 200
    assert response["Content-Language"] == "de"
    assert 'action="/clarion/admin/login/' in response.content.decode()
