from notifications.models import Message, Run

from ..conftest import email_step, in_app_step


def test_trigger_runs_in_app_then_email_through_smtp(api, make_workflow, run_tasks, smtp):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": [{"id": "u1", "name": "Ada", "email": "ada@example.com"}],
                         "data": {"body": "hello <b>"}})
    assert response.status_code == 202, response.content
    run_tasks()
    mail = smtp.wait_for(1)[0]
    assert mail["Subject"] == "Hello Ada"
    assert "hello &lt;b&gt;" in mail.get_body(("html",)).get_content()
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED
    assert set(Message.objects.values_list("channel", "status")) == {("in_app", "sent"),
                                                                      ("email", "sent")}
