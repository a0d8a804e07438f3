"""Property test: whatever ``--set section.field=value`` a user types, the configuration loads or
stops with a :class:`ConfigError` (one line, exit code 2 on the command line) — never another
exception, never a traceback."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gr2.checks import ConfigError
from gr2.config import RunConfig, load_config

FIELDS = sorted(["task", *(f"{section.name}.{f.name}" for section in dataclasses.fields(RunConfig)
                           if section.default_factory is not dataclasses.MISSING  # the sections, not task
                           for f in dataclasses.fields(section.default_factory()))])

VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", ".nan", ".inf", "-.inf", "1e400", "3e-5", "0", "-1", "true", "null", "", "~",
                     "[]", "[0]", "[1, 2]", "{}", "{a: 1}", "[", "{", "'", "auto", "cpu", "none", "é", "\x00"]),
    st.text(max_size=12),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_any_override_loads_or_is_a_one_line_config_error(overrides):
    try:
        cfg = load_config(None, [f"{key}={value}" for key, value in overrides])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    else:
        assert isinstance(cfg, RunConfig)
