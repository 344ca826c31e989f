"""Property tests of conditions over earlier steps (`steps.<ref>.*`) and of the branch choice:
for any engagement timestamps a message may have, `steps.<ref>.seen/read/clicked/delivered`
agree with what `unless` counts and imply one another; the branch taken is always the first
whose conditions hold, else the default."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from notifications import conditions
from notifications.engine.branches import pick
from notifications.models import Message, Run
from notifications.rendering.variables import ENGAGEMENT_STATES, engagement_at, step_variables

from .test_conditions_properties import trees, variables

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
stamps = st.none() | st.integers(0, 3600).map(lambda seconds: T0 + timedelta(seconds=seconds))
messages = st.builds(
    lambda ref, channel, status, sent, delivered, seen, read, clicked, opened: Message(
        step_ref=ref, channel=channel, status=status, sent_at=sent, delivered_at=delivered,
        seen_at=seen, read_at=read, clicked_at=clicked, opened_at=opened),
    st.sampled_from(["inbox", "mail", "sms"]), st.sampled_from(["in_app", "email", "sms"]),
    st.sampled_from([s.value for s in Message.Status]), stamps, stamps, stamps, stamps, stamps,
    stamps)
outputs = st.dictionaries(st.sampled_from(["inbox", "batch"]), st.dictionaries(
    st.sampled_from(["count", "status"]), st.integers(0, 5), max_size=2), max_size=2)


def leaf(path, value=True):
    return {"path": path, "op": "eq", "value": value}


@settings(max_examples=200, deadline=None)
@given(found=st.lists(messages, max_size=3, unique_by=lambda m: m.step_ref), state=outputs)
def test_steps_variables_agree_with_unless_and_imply_one_another(found, state):
    run = Run(state={"steps": state})
    steps = step_variables(run, found)
    variables = {"steps": steps}
    for message in found:
        entry = steps[message.step_ref]
        assert entry["status"] == message.status
        assert entry["channel"] == message.channel
        for state_name in ENGAGEMENT_STATES:
            reached = engagement_at(message, state_name) is not None
            assert entry[state_name] is reached
            assert conditions.evaluate(leaf(f"steps.{message.step_ref}.{state_name}"),
                                       variables) is reached
        # clicked → read → seen → delivered
        assert entry["clicked"] <= entry["read"] <= entry["seen"] <= entry["delivered"]
    for ref, output in state.items():  # a function step's own output is kept beside them
        for key, value in output.items():
            if ref not in {m.step_ref for m in found} or key not in ("status",):
                assert steps[ref][key] == value


@settings(max_examples=100, deadline=None)
@given(ref=st.sampled_from(["inbox", "mail"]), state=st.sampled_from(ENGAGEMENT_STATES))
def test_a_step_without_a_message_is_missing_never_false(ref, state):
    variables = {"steps": step_variables(Run(state={}), [])}
    path = f"steps.{ref}.{state}"
    assert conditions.evaluate({"path": path, "op": "not_exists"}, variables)
    assert not conditions.evaluate(leaf(path, False), variables)
    assert conditions.evaluate({"path": path, "op": "neq", "value": True}, variables)


@settings(max_examples=150, deadline=None)
@given(branch_trees=st.lists(trees, min_size=1, max_size=4), data=variables)
def test_the_branch_taken_is_the_first_that_holds_else_the_default(branch_trees, data):
    branches = [{"name": f"b{index}", "conditions": tree}
                for index, tree in enumerate(branch_trees)]
    name, checked = pick(branches, data)
    held = [conditions.evaluate(tree, data) for tree in branch_trees]
    expected = f"b{held.index(True)}" if True in held else "default"
    assert name == expected
    # Tried in order up to the one taken, each with what its conditions saw.
    assert [item["branch"] for item in checked] == [
        f"b{index}" for index in range(len(checked))]
    assert [item["held"] for item in checked] == held[:len(checked)]
    assert checked[-1]["held"] is (name != "default")
