"""Hundreds of mutated specs: every one either loads and compiles or gives a clean SpecError /
CompileError naming a key path; never a traceback. Prints the tally for the closing figures."""

import copy
import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xspec.compiler.plan import compile_spec
from xspec.errors import XspecError
from xspec.spec.load import load_spec
from tests_support import BASE  # noqa: F401  (see conftest: puts tests/ on sys.path)

VALUES = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(), st.just([]), st.lists(st.integers(-3, 3), max_size=3),
    st.just({"zip": "objective", "values": [1, 2, 3]}), st.just({"zip": "nope", "values": [1]}),
    st.sampled_from(["RN51", "banana", "none", "csv", "../../etc", "${UNSET_XSPEC_VAR}", "mmcl+ssl",
                     "gaussian_fixed", "four_corners", "epoch(99)", "match_accuracy(ssl)"]),
)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


@st.composite
def mutated(draw):
    raw = copy.deepcopy(tomllib.loads(BASE))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(raw))
        path = draw(st.sampled_from(paths))
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "unknown", "list"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "unknown" and isinstance(parent, dict):
            parent[draw(st.text("abcxyz_", min_size=1, max_size=6))] = 1
        else:
            parent[path[-1]] = draw(st.lists(VALUES, max_size=3))
    return raw


def _clean(text: str) -> bool:
    return all(line.count(":") >= 1 and "Traceback" not in line for line in text.splitlines())


def test_mutated_specs_never_traceback(tmp_path_factory):
    """300 mutations: each compiles or fails with a clean error; both outcomes must occur and
    most mutations must reach the loader (a generator that produced nothing would pass)."""
    tally = {"tried": 0, "clean_error": 0, "loaded": 0}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(raw=mutated())
    def check(raw):
        path = tmp_path_factory.mktemp("fuzz") / "spec.toml"
        try:
            path.write_text(tomli_w.dumps(raw))
        except (TypeError, ValueError):
            return  # not representable as TOML
        tally["tried"] += 1
        try:
            compile_spec(load_spec(path))
            tally["loaded"] += 1
        except XspecError as exc:
            tally["clean_error"] += 1
            assert str(exc) and _clean(str(exc)), str(exc)

    check()
    print(f"\nfuzzed specs: {tally['tried']} tried, {tally['clean_error']} clean errors, "
          f"{tally['loaded']} valid, 0 tracebacks")
    assert tally["tried"] >= 200
    assert tally["clean_error"] >= 50 and tally["loaded"] >= 5
    assert tally["tried"] == tally["clean_error"] + tally["loaded"]
