"""The client checks the master's answers without pydantic (core.answer_check) against
the models of core.answers written out as data (core.answer_schemas): that file is the
models' own, and the check refuses exactly what pydantic refuses, with the same fields
and messages (hypothesis draws answers, well-formed and not, for every model)."""
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slapfed.core import answer_check, answer_schemas, answers
from slapfed.core.errors import InvalidInput

# values of every JSON kind, including those pydantic's lax mode coerces or nearly does
JUNK = [None, True, False, 0, 1, 2, -1, 7, 1.0, 1.5, -0.0, math.nan, math.inf, 1e20, 2 ** 70,
        "1", " 2 ", "1.0", "1.", "1.5", "+1", "-3", "1_000", "1__0", "_1", "1e3", ".5",
        "inf", "nan", "Infinity", "x", "", " ", "true", "True", "no", "OFF", "t", "00",
        "0", "2", "ok", "\n", [], [1], ["a"], {}, {"a": 1}, {"a": "b"}]


def test_the_compiled_schemas_are_the_models_own():
    """Run ``make answer-schemas`` after changing a model of core.answers."""
    assert Path(answer_schemas.__file__).read_text() == answers.compiled_source()


def test_only_models_with_validator_functions_are_left_to_pydantic():
    """Every answer the client reads (``A.Name`` in slapfed/client.py) but one wire type
    (a pydantic dataclass with validator functions) is checked without pydantic."""
    import slapfed.client
    read = set(re.findall(r"\bA\.([A-Z]\w*)", Path(slapfed.client.__file__).read_text()))
    assert {"Instance", "DesiredState", "UsageAck", "Health"} <= read
    assert read - set(answer_schemas.ANSWERS) == {"DelegationPolicy"}
    assert {m.__name__ for m in answers.ANSWERS} - set(answer_schemas.ANSWERS) == \
        {"DelegationPolicy"}


def test_a_model_left_to_pydantic_is_still_checked():
    good = {"auto": True, "rules": []}
    assert answer_check.check("DelegationPolicy", good) is good
    with pytest.raises(InvalidInput):
        answer_check.check("DelegationPolicy", {"auto": "maybe", "rules": []})


def test_an_answer_that_drifts_is_refused_naming_the_field():
    good = {"status": "ok", "generation": 1, "version": "0.1.0"}
    assert answer_check.check("Health", good) is good
    assert answer_check.check("Health", {**good, "colour": "red"})      # a newer master
    with pytest.raises(InvalidInput) as info:
        answer_check.check("Health", {**good, "generation": "one"}, "answer to GET /health")
    assert info.value.details == [{"field": "generation", "problem": "Input should be a "
                                   "valid integer, unable to parse string as an integer"}]
    assert str(info.value).startswith("the master's answer to GET /health does not match "
                                      "its API (Health): generation")
    with pytest.raises(InvalidInput) as info:
        answer_check.check("Health", {"status": "ok", "version": "0.1.0"})
    assert info.value.details == [{"field": "generation", "problem": "Field required"}]


def _values(schema: dict, depth: int = 0):
    """Answers for ``schema``: mostly shaped like it, any field possibly missing, wrong
    or coercible (JUNK)."""
    junk = st.sampled_from(JUNK)
    kind = schema["type"]
    if depth > 5:
        return junk
    if kind == "model":
        model = answer_schemas.MODELS[schema["name"]]
        fields = {keys[-1 if len(keys) > 1 and i % 2 else 0]: _values(field, depth + 1)
                  for i, (keys, field, _required) in enumerate(model["fields"])}
        shaped = st.fixed_dictionaries({}, optional={**fields, "newer": junk})
        return st.one_of(shaped, shaped, shaped, junk)
    if kind == "nullable":
        return st.one_of(st.none(), _values(schema["schema"], depth))
    if kind == "str":
        text = st.from_regex(schema["pattern"]) if "pattern" in schema else st.text(max_size=5)
        return st.one_of(text, st.text(max_size=5), junk)
    if kind == "int":
        return st.one_of(st.integers(-3, 3), st.integers(), junk)
    if kind == "float":
        return st.one_of(st.floats(), st.integers(), junk)
    if kind == "literal":
        return st.one_of(st.sampled_from(schema["expected"]), junk)
    if kind == "list":
        return st.one_of(st.lists(_values(schema["items_schema"], depth + 1), max_size=3), junk)
    if kind == "dict":
        keys = _values(schema.get("keys_schema", {"type": "any"}), depth + 1)
        return st.one_of(st.dictionaries(st.one_of(st.text(max_size=3), keys.filter(
            lambda k: isinstance(k, str))), _values(schema.get("values_schema", {"type": "any"}),
                                                    depth + 1), max_size=3), junk)
    return junk                                   # bool, any


def _verdict(check, name, data):
    try:
        check(name, data)
    except InvalidInput as exc:
        return exc.details
    return None


def _pydantic(name, data):
    return answers.check(getattr(answers, name), data)


@pytest.mark.parametrize("name", sorted(m.__name__ for m in answers.ANSWERS
                                         if m.__name__ in answer_schemas.ANSWERS))
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_check_refuses_what_pydantic_refuses_with_the_same_words(name, data):
    answer = data.draw(_values(answer_schemas.ANSWERS[name]))
    assert _verdict(answer_check.check, name, answer) == _verdict(_pydantic, name, answer)


@pytest.mark.parametrize("kind, value", [(k, v) for k in ("int", "float", "bool", "str")
                                          for v in JUNK])
def test_each_scalar_is_coerced_or_refused_as_pydantic_does(kind, value):
    from pydantic import TypeAdapter, ValidationError
    try:
        TypeAdapter({"int": int, "float": float, "bool": bool, "str": str}[kind]
                    ).validate_python(value)
        expected = []
    except ValidationError as exc:
        expected = [((), e["msg"]) for e in exc.errors(include_url=False)]
    found = []
    answer_check._check({"type": kind}, value, (), found)
    assert found == expected
