import pytest

from notifications.conditions import ConditionError, evaluate, explain, validate

VARIABLES = {
    "data": {"plan": "pro", "seats": 5, "tags": ["beta", "eu"], "note": "hello world",
             "nested": {"flag": True}, "empty": None},
    "recipient": {"id": "u1", "locale": "pt-BR", "data": {"vip": True}},
    "tenant": {"key": "acme"},
    "actor": {"id": "u2", "name": "Grace"},
}


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ({"path": "data.plan", "op": "eq", "value": "pro"}, True),
        ({"path": "data.plan", "op": "eq", "value": "free"}, False),
        ({"path": "data.plan", "op": "neq", "value": "free"}, True),
        ({"path": "data.missing", "op": "neq", "value": "free"}, True),
        ({"path": "data.missing", "op": "eq", "value": None}, False),
        ({"path": "data.seats", "op": "gt", "value": 4}, True),
        ({"path": "data.seats", "op": "gt", "value": 5}, False),
        ({"path": "data.seats", "op": "gte", "value": 5}, True),
        ({"path": "data.seats", "op": "lt", "value": 5}, False),
        ({"path": "data.seats", "op": "lte", "value": 5}, True),
        ({"path": "data.seats", "op": "gt", "value": "3"}, False),  # type mismatch is false
        ({"path": "data.plan", "op": "in", "value": ["pro", "team"]}, True),
        ({"path": "data.plan", "op": "in", "value": ["free"]}, False),
        ({"path": "data.tags", "op": "contains", "value": "beta"}, True),
        ({"path": "data.tags", "op": "contains", "value": "us"}, False),
        ({"path": "data.note", "op": "contains", "value": "world"}, True),
        ({"path": "data.nested", "op": "contains", "value": "flag"}, True),
        ({"path": "data.seats", "op": "contains", "value": 5}, False),
        ({"path": "data.nested.flag", "op": "exists"}, True),
        ({"path": "data.empty", "op": "exists"}, False),
        ({"path": "data.nope", "op": "exists"}, False),
        ({"path": "data.nope", "op": "not_exists"}, True),
        ({"path": "data.plan", "op": "not_exists"}, False),
        ({"path": "data.tags.1", "op": "eq", "value": "eu"}, True),
        ({"path": "data.tags.9", "op": "exists"}, False),
        ({"path": "recipient.data.vip", "op": "eq", "value": True}, True),
        ({"path": "recipient.locale", "op": "eq", "value": "pt-BR"}, True),
        ({"path": "tenant.key", "op": "eq", "value": "acme"}, True),
        ({"path": "actor.name", "op": "eq", "value": "Grace"}, True),
    ],
)
def test_each_leaf_operator_evaluates_as_documented(leaf, expected):
    validate({"all": [leaf]})
    assert evaluate({"all": [leaf]}, VARIABLES) is expected


def test_all_and_any_combine_and_nest_and_no_conditions_pass():
    yes = {"path": "data.plan", "op": "eq", "value": "pro"}
    no = {"path": "data.plan", "op": "eq", "value": "free"}
    assert evaluate({"all": [yes, yes]}, VARIABLES) is True
    assert evaluate({"all": [yes, no]}, VARIABLES) is False
    assert evaluate({"any": [no, yes]}, VARIABLES) is True
    assert evaluate({"any": [no, no]}, VARIABLES) is False
    assert evaluate({"all": [yes, {"any": [no, yes]}]}, VARIABLES) is True
    assert evaluate(None, VARIABLES) is True


def test_explain_reports_each_leaf_with_the_value_it_saw():
    tree = {"all": [{"path": "data.seats", "op": "gt", "value": 10},
                    {"path": "data.nope", "op": "exists"}]}
    assert explain(tree, VARIABLES) == [
        {"path": "data.seats", "op": "gt", "value": 10, "actual": 5, "held": False},
        {"path": "data.nope", "op": "exists", "actual": None, "held": False},
    ]


@pytest.mark.parametrize(
    ("tree", "field", "message"),
    [
        ([], "conditions", 'Expected an object with "all" or "any".'),
        ({"all": [], "any": []}, "conditions", 'Expected exactly one of "all" or "any".'),
        ({"all": []}, "conditions.all", "Expected a non-empty list."),
        ({"all": [{"path": "body.x", "op": "eq", "value": 1}]}, "conditions.all[0].path",
         "Expected a path starting with one of: data, recipient, tenant, actor, steps."),
        ({"any": [{"path": "data.x", "op": "like", "value": 1}]}, "conditions.any[0].op",
         "Expected one of: eq, neq, gt, gte, lt, lte, in, contains, exists, not_exists."),
        ({"all": [{"path": "data.x", "op": "eq"}]}, "conditions.all[0].value",
         'Required for op "eq".'),
        ({"all": [{"path": "data.x", "op": "in", "value": "a"}]}, "conditions.all[0].value",
         'Expected a list for op "in".'),
        ({"all": [{"path": "data.x", "op": "exists", "extra": 1}]}, "conditions.all[0]",
         "Unknown keys: extra."),
        ({"all": [{"any": [{"path": "data.x", "op": "bad"}]}]}, "conditions.all[0].any[0].op",
         "Expected one of: eq, neq, gt, gte, lt, lte, in, contains, exists, not_exists."),
    ],
)
def test_validate_names_the_malformed_part(tree, field, message):
    with pytest.raises(ConditionError) as info:
        validate(tree)
    assert (info.value.field, info.value.message) == (field, message)
