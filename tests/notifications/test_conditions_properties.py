"""Property tests of the condition evaluator (notifications/conditions.py): for any data and any
well-formed tree, it answers without raising, combinators combine, and opposite ops disagree."""

from hypothesis import given, settings
from hypothesis import strategies as st

from notifications import conditions

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(
    allow_nan=False, width=16) | st.sampled_from(["", "a", "pro", "b a"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["plan", "n", "tags", "a"]), inner, max_size=3), max_leaves=6)
paths = st.builds(lambda root, rest: ".".join([root, *rest]),
                  st.sampled_from(conditions.ROOTS),
                  st.lists(st.sampled_from(["plan", "n", "tags", "a", "0", "-1"]), min_size=1,
                           max_size=3))
variables = st.fixed_dictionaries({root: st.dictionaries(
    st.sampled_from(["plan", "n", "tags", "a"]), values, max_size=4)
    for root in conditions.ROOTS})
value_ops = st.sampled_from([op for op in conditions.OPS
                             if op not in ("exists", "not_exists", "in")])
leaves = (st.builds(lambda path, op, value: {"path": path, "op": op, "value": value},
                    paths, value_ops, values)
          | st.builds(lambda path, op: {"path": path, "op": op}, paths,
                      st.sampled_from(["exists", "not_exists"]))
          | st.builds(lambda path, value: {"path": path, "op": "in", "value": value},
                      paths, st.lists(values, max_size=3)))
trees = st.recursive(leaves, lambda inner: st.builds(
    lambda combinator, items: {combinator: items}, st.sampled_from(["all", "any"]),
    st.lists(inner, min_size=1, max_size=3)), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(tree=trees, data=variables)
def test_a_well_formed_tree_validates_and_evaluates_to_a_bool(tree, data):
    conditions.validate(tree)
    assert conditions.evaluate(tree, data) in (True, False)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(trees, min_size=1, max_size=4), data=variables)
def test_all_is_every_item_and_any_is_some_item(items, data):
    results = [conditions.evaluate(item, data) for item in items]
    assert conditions.evaluate({"all": items}, data) == all(results)
    assert conditions.evaluate({"any": items}, data) == any(results)


@settings(max_examples=150, deadline=None)
@given(path=paths, value=values, data=variables)
def test_eq_and_neq_always_disagree_and_so_do_exists_and_not_exists(path, value, data):
    def holds(op, **extra):
        return conditions.evaluate({"path": path, "op": op, **extra}, data)

    assert holds("eq", value=value) != holds("neq", value=value)
    assert holds("exists") != holds("not_exists")


@settings(max_examples=150, deadline=None)
@given(tree=trees, data=variables)
def test_explain_lists_every_leaf_with_what_it_saw(tree, data):
    def leaf_count(node):
        return (sum(leaf_count(item) for item in node.get("all", node.get("any", [])))
                if "all" in node or "any" in node else 1)

    explained = conditions.explain(tree, data)
    assert len(explained) == leaf_count(tree)
    for entry in explained:
        leaf = {key: entry[key] for key in ("path", "op", "value") if key in entry}
        assert entry["held"] == conditions.evaluate(leaf, data)
