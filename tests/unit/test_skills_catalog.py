"""The skills catalog: names and descriptions by name, within the token budget, with a
note saying how many skills were left out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nexus.core.context import counter_for
from nexus.extensions.skills.catalog import HEAD, catalog_block, estimate_tokens


def test_every_skill_fits_a_roomy_budget_in_name_order() -> None:
    block = catalog_block([("zeta", "last one"), ("alpha", "first  one\nwrapped")], 400)
    assert block.splitlines() == [HEAD, "- alpha: first one wrapped", "- zeta: last one"]


def test_no_skills_no_block() -> None:
    assert catalog_block([], 400) == ""


def test_many_skills_are_cut_with_a_note() -> None:
    skills = [(f"skill-{i:03}", "does a thing " * 5) for i in range(100)]
    block = catalog_block(skills, 300)
    lines = block.splitlines()
    listed = [line for line in lines if line.startswith("- ")]
    assert 0 < len(listed) < 100
    assert listed[0].startswith("- skill-000") and listed[-1].startswith(
        f"- skill-{len(listed) - 1:03}"
    )
    assert (
        lines[-1]
        == f"({100 - len(listed)} more skill(s) not listed: the catalog is limited to 300 tokens)"
    )
    assert estimate_tokens(block) <= 300


def test_a_budget_below_the_heading_gives_nothing() -> None:
    assert catalog_block([("a", "b")], 10) == ""


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), st.text(min_size=1, max_size=300)
        ),
        max_size=40,
        unique_by=lambda s: s[0],
    ),
    st.integers(min_value=1, max_value=2000),
)
def test_the_budget_is_never_exceeded_and_the_order_is_stable(
    skills: list[tuple[str, str]], budget: int
) -> None:
    block = catalog_block(skills, budget)
    assert estimate_tokens(block) <= budget
    assert block == catalog_block(list(reversed(skills)), budget)
    if block:
        names = [line[2:].split(":", 1)[0] for line in block.splitlines() if line.startswith("- ")]
        assert names == sorted(n for n, _ in skills)[: len(names)]


def test_a_models_counter_bounds_the_whole_block() -> None:
    count = counter_for("offline-extractive").count  # the calibrated estimate
    skills = [(f"s-{i}", f"Does {i}-th thing: a, b; c/d -- e.") for i in range(60)]
    assert catalog_block(skills, 20, count) == ""  # not even the heading fits
    for budget in (150, 250, 400):
        block = catalog_block(skills, budget, count)
        assert block and count(block) <= budget
        assert block.endswith(f"the catalog is limited to {budget} tokens)")
