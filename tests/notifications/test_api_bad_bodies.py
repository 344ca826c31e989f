"""Bodies that used to answer a 500 or an HTML page: each is a JSON 4xx in the error shape."""

import pytest


@pytest.fixture
def post(api, make_workflow):
    workflow = make_workflow()
    def post(body: bytes):
        return api.generic("POST", f"/api/v1/workflows/{workflow.key}/trigger", body,
                           content_type="application/json")
    return post


def test_json_nested_deeper_than_python_reads_is_a_400(post):
    depth = 100_000
    response = post(b'{"recipients": ["a"], "data": ' + b"[" * depth + b"]" * depth + b"}")
    assert response.status_code == 400
    assert response.json() == {"error": "parse_error",
                               "detail": "JSON parse error - nested too deeply."}


@pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
def test_a_number_beyond_a_float_is_a_400(post, number):
    response = post(b'{"recipients": ["a"], "data": {"x": ' + number + b"}}")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"
    assert "Number out of range" in response.json()["detail"]


def test_a_body_over_the_upload_limit_is_a_413_in_the_error_shape(post, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(b'{"recipients": ["a"], "data": {"x": "' + b"y" * 2000 + b'"}}')
    assert response.status_code == 413
    assert response.json() == {
        "error": "request_too_large",
        "detail": "The request body is larger than this server accepts "
                  "(DATA_UPLOAD_MAX_MEMORY_SIZE)."}


@pytest.mark.parametrize("tenant", [{"a": 1}, 5, ["acme"], True])
def test_a_tenant_that_is_not_a_string_is_refused_as_such(api, make_workflow, tenant):
    make_workflow()
    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": ["a"], "tenant": tenant})
    assert response.status_code == 400
    assert response.json()["fields"] == {"tenant": ["Expected a tenant key."]}
