import pytest
from credit_helpers import RecordingAnalyst, make_episode, make_group

from credit.reference import (
    ROLE,
    SYSTEM_PROMPT,
    ReferenceConfig,
    SiblingTrace,
    reference_messages,
    select_siblings,
    truncate_middle,
    write_references,
)
from credit.sanitizer import PrivateValues, Sanitizer, SanitizerConfig


def _traces(spec):
    """``spec``: (success, length) per sibling."""
    return [SiblingTrace(i, ok, "x" * n) for i, (ok, n) in enumerate(spec)]


def _room_for(traces, indices):
    return sum(len(traces[i].block()) for i in indices)


# (case, siblings as (success, chars), shown siblings that the budget must allow, expected)
FALLBACK = [
    ("all fit", [(True, 50), (False, 60), (False, 70)], [0, 1, 2], [0, 1, 2]),
    (
        "more successes: both failures, the two shortest successes",
        [
            (True, 300),
            (True, 100),
            (False, 200),
            (True, 120),
            (True, 500),
            (False, 250),
            (True, 90),
            (True, 400),
        ],
        [1, 2, 5, 6],
        [1, 2, 5, 6],
    ),
    (
        "more failures: both successes, the two longest failures",
        [
            (False, 100),
            (True, 300),
            (False, 400),
            (False, 120),
            (True, 90),
            (False, 350),
            (False, 80),
            (False, 110),
        ],
        [1, 2, 4, 5],
        [1, 2, 4, 5],
    ),
    (
        "still too long: matched pairs dropped, least preferred first",
        [(True, 100), (True, 200), (False, 300), (False, 150)],
        [0, 2],
        [0, 2],
    ),
]


@pytest.mark.parametrize(
    "spec,budget_of,expected", [c[1:] for c in FALLBACK], ids=[c[0] for c in FALLBACK]
)
def test_long_context_fallback_picks_the_paper_siblings(spec, budget_of, expected):
    traces = _traces(spec)
    selection = select_siblings(traces, _room_for(traces, budget_of))
    assert selection.shown == expected
    assert selection.fallback == (len(expected) < len(spec))
    assert selection.chars_per_trace is None


def test_one_pair_too_long_is_truncated_within_budget():
    group = make_group(
        [
            make_episode([("assistant", "a" * 5000)], 1.0),
            make_episode([("assistant", "b" * 8000)], 0.0),
        ]
    )
    config = ReferenceConfig(max_prompt_chars=len(SYSTEM_PROMPT) + 2000)
    analyst = RecordingAnalyst()
    (ref,) = write_references(
        [(group, "Book it.", Sanitizer(SanitizerConfig(), PrivateValues()))], analyst, config
    )
    assert ref.selection.fallback and ref.selection.chars_per_trace is not None
    assert ref.prompt_chars <= config.max_prompt_chars
    user = analyst.calls[0][1]["content"]
    assert (
        "characters omitted" in user
        and "(outcome: success)" in user
        and "(outcome: failure)" in user
    )


def test_a_short_sibling_stays_whole_when_its_partner_is_cut():
    traces = _traces([(True, 100), (False, 5000)])
    room = len(traces[0].block()) + 1000
    selection = select_siblings(traces, room)
    assert selection.chars_per_trace == 1000


def test_budget_without_room_for_siblings_is_refused():
    with pytest.raises(ValueError, match="max_prompt_chars"):
        reference_messages(
            "task", _traces([(True, 5), (False, 5)]), ReferenceConfig(max_prompt_chars=100)
        )


def test_non_mixed_group_has_no_reference():
    with pytest.raises(ValueError, match="mixed"):
        select_siblings(_traces([(True, 500), (True, 500)]), 100)


def test_truncate_middle_keeps_head_and_tail():
    out = truncate_middle("HEAD" + "x" * 1000 + "TAIL", 200)
    assert out.startswith("HEAD") and out.endswith("TAIL") and len(out) <= 200


def test_table5_prompt_with_sanitized_siblings():
    private = PrivateValues(gold_literals=("ZFA04Y",), answer_literals=("$450",))
    group = make_group(
        [
            make_episode(
                [("assistant", "cancel ZFA04Y"), ("tool", '{"refund": "$450", "password": "pw1"}')],
                1.0,
                reward_components={"db": 1.0},
            ),
            make_episode([("assistant", "I cannot help.")], 0.0),
        ]
    )
    analyst = RecordingAnalyst(reply="(5) mask ZFA04Y and $450")
    (ref,) = write_references(
        [(group, "Cancel ZFA04Y please", Sanitizer(SanitizerConfig(), private))],
        analyst,
        ReferenceConfig(),
    )
    (messages,) = analyst.calls
    system, user = messages[0]["content"], messages[1]["content"]
    assert system.startswith(ROLE)
    for block in ("Input:", "Rules: Use only information present", "Output: (1) state checks"):
        assert block in system
    assert "Task instruction:\nCancel [GOLD_1] please" in user
    assert "### Sibling 1 (outcome: success)" in user and "### Sibling 2 (outcome: failure)" in user
    assert "[step 1] assistant: cancel [GOLD_1]" in user
    for secret in ("ZFA04Y", "$450", "450", "pw1", "reward_components", "'db'"):
        assert secret not in user
    # The reply is sanitized too before it becomes teacher context.
    assert ref.text == "(5) mask [GOLD_1] and [ANSWER_1]"
    assert not ref.selection.fallback
