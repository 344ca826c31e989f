"""The OpenAPI document and the browsable docs: public, complete, and served without a CDN."""

import re

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

PATHS = {
    "/api/v1/workflows": {"get"},
    "/api/v1/workflows/{key}": {"get", "put"},
    "/api/v1/workflows/{key}/trigger": {"post"},
    "/api/v1/workflows/{key}/trigger/bulk": {"post"},
    "/api/v1/workflows/{key}/cancel": {"post"},
    "/api/v1/triggers/{trigger_id}": {"get"},
    "/api/v1/runs/{run_id}": {"get"},
    "/api/v1/approvals/{token}": {"post"},
    "/api/v1/messages": {"get"},
    "/api/v1/messages/{message_id}": {"get"},
    "/api/v1/recipients/{recipient_id}": {"get", "put", "delete"},
    "/api/v1/recipients/{recipient_id}/channel-data/{channel}": {"put"},
    "/api/v1/recipients/{recipient_id}/preferences": {"get", "put", "patch"},
    "/api/v1/tenants/{key}": {"get", "put"},
    "/api/v1/tenants/{key}/preferences": {"get", "put", "patch"},
    "/api/v1/tenants/{key}/inbox-secret": {"post"},
    "/api/v1/topics/{key}": {"get", "put"},
    "/api/v1/topics/{key}/subscriptions": {"post", "delete"},
    "/api/v1/providers/{key}": {"get", "put", "delete"},
    "/api/v1/schedules/{key}": {"get", "put", "delete"},
    "/api/v1/schedules/{key}/occurrences": {"get"},
    "/api/v1/recipients/{recipient_id}/inbox-token": {"post"},
    "/api/v1/event-endpoints": {"get"},
    "/api/v1/event-endpoints/{endpoint_id}": {"get", "put", "delete"},
    # The inbox API: recipient credentials (inbox token or HMAC), not an API key.
    "/api/v1/inbox/": {"get"},
    "/api/v1/inbox/counts": {"get"},
    "/api/v1/inbox/items/{item_id}/{action}": {"post"},
    "/api/v1/inbox/seen": {"post"},
    "/api/v1/inbox/read": {"post"},
    "/api/v1/inbox/archive-read": {"post"},
    "/api/v1/inbox/preferences": {"get", "patch"},
    "/api/v1/inbox/preferences/center": {"get"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def schema(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def test_schema_is_public_openapi_3_yaml_by_default(db):
    response = Client().get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Clarion API"


def test_schema_documents_every_endpoint_and_method(schema):
    assert schema["openapi"].startswith("3.")
    documented = {path: set(item) & HTTP_METHODS for path, item in schema["paths"].items()}
    assert documented == PATHS


def test_schema_declares_bearer_auth_on_every_operation(schema):
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": "A Clarion API key secret."}
    for path, item in schema["paths"].items():
        for method in set(item) & HTTP_METHODS:
            if path.startswith("/api/v1/approvals/"):  # the signed link is the credential
                assert item[method].get("security", []) in ([], [{}]), (method, path)
                continue
            expected = "InboxRecipient" if path.startswith("/api/v1/inbox/") else "ApiKey"
            assert item[method]["security"] == [{expected: []}], (method, path)


def test_schema_documents_the_trigger_contract(schema):
    trigger = schema["paths"]["/api/v1/workflows/{key}/trigger"]["post"]

    assert trigger["operationId"] == "workflow_trigger"
    assert {"202", "400", "401", "403", "404", "409", "422"} <= set(trigger["responses"])
    assert [p["name"] for p in trigger["parameters"] if p["in"] == "header"] == [
        "Idempotency-Key"]
    response = trigger["responses"]["202"]["content"]["application/json"]["schema"]
    body = schema["components"]["schemas"][response["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"trigger_id", "runs"}
    request = trigger["requestBody"]["content"]["application/json"]["schema"]
    fields = schema["components"]["schemas"][request["$ref"].rsplit("/", 1)[1]]
    assert set(fields["properties"]) == {"recipients", "data", "actor", "tenant",
                                         "cancellation_key"}
    assert fields["required"] == ["recipients"]
    error = schema["components"]["schemas"]["ApiError"]
    assert set(error["properties"]) == {"error", "detail", "fields"}


def test_schema_generates_without_warnings_and_validates(db, tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert set(yaml.safe_load(target.read_text())["paths"]) == set(PATHS)


def test_docs_page_is_public_html_that_loads_only_local_files(db):
    client = Client()
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert '<div id="swagger-ui"></div>' in page
    for cdn in ("jsdelivr", "unpkg", "cdnjs", "googleapis", "http://", "https://"):
        assert cdn not in page, cdn
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        content = b"".join(served.streaming_content) if served.streaming else served.content
        served.close()
        assert content, asset
    assert '"/api/schema/"' in page
