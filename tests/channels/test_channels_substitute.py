"""``channels._substitute.substitute`` is ``string.Template.safe_substitute``, parsed once."""
from __future__ import annotations

from string import Template

from hypothesis import given, settings
from hypothesis import strategies as st

from channels._substitute import substitute

_bits = st.sampled_from(["$", "$$", "${", "}", "$name", "${name}", "$total", "${total}x", "$1", "$ ", "${bad name}",
                         "$_u", "${_u}", "$name_html", "a", " ", "\n", "€", "<p>", "$$name", "$$$name"])


@settings(max_examples=400, deadline=None)
@given(text=st.lists(st.one_of(_bits, st.text(max_size=5)), max_size=30).map("".join),
       mapping=st.dictionaries(st.sampled_from(["name", "total", "_u", "name_html", "other"]), st.text(max_size=6)))
def test_same_as_safe_substitute(text: str, mapping: dict[str, str]) -> None:
    assert substitute(text, mapping) == Template(text).safe_substitute(mapping)
    assert substitute(Template(text), mapping) == substitute(text, mapping)  # a Template or its text


def test_a_mapping_that_builds_values_on_use() -> None:
    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: str) -> str:
            if key == "late":
                return "built"
            raise KeyError(key)

    assert substitute("$late and $absent, $$5", Lazy()) == "built and $absent, $5"
