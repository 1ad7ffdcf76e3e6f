"""The leakage boundary, tested with planted secrets."""

import json

import pytest
from credit_helpers import make_episode

from credit.reference import render_trace
from credit.sanitizer import PrivateValues, Sanitizer, SanitizerConfig, literal_token_mask

PRIVATE = PrivateValues.from_labels(
    gold_arguments=[
        {"reservation_id": "ZFA04Y", "cabin": "business", "flights": [{"n": "HAT170"}]}
    ],
    answers=["$1,628", 3],
)

# (what is planted, text, secret that must vanish, structure that must stay)
PLANTED = [
    (
        "gold action values in a tool call",
        '<tool_call>{"name": "update_reservation_flights", "arguments": '
        '{"reservation_id": "ZFA04Y", "cabin": "business", "flights": [{"n": "HAT170"}]}}'
        "</tool_call>",
        ["ZFA04Y", "business", "HAT170"],
        ["update_reservation_flights", '"reservation_id": "[GOLD_', '"cabin"'],
    ),
    (
        "an evaluator report inside an observation",
        '{"status": "ok", "reward_info": {"reward": 1.0, "db_check": {"db_match": true}, '
        '"action_checks": [{"action": "cancel_reservation", "met": false}]}}',
        ["db_match", "cancel_reservation", "1.0"],
        ['"status": "ok"', '"reward_info": "[EVALUATOR_REPORT_1]"'],
    ),
    (
        "a plain-text evaluation line",
        "Evaluation: 2/3 tests passed; failing test_total\nnext line stays",
        ["2/3 tests", "test_total"],
        ["next line stays"],
    ),
    (
        "credentials in code, JSON and headers",
        "apis.spotify.login(username='joe@ex.com', password='hunter2!x')\n"
        '{"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature"}\n'
        "Authorization: Bearer abcdEFGH12345678\nkey sk-proj-ABCDEFGHIJKLMNOPQRST",
        ["hunter2!x", "eyJhbGciOiJIUzI1NiJ9", "abcdEFGH12345678", "sk-proj-ABCDEFGHIJKLMNOPQRST"],
        ["apis.spotify.login(username='joe@ex.com', password='[CREDENTIAL_", '"access_token"'],
    ),
    (
        "payment and account values",
        '{"payment_id": "pm_77x", "card": "4111 1111 1111 1111", "iban": "GB82WEST12345698765432"}'
        "\npaid with credit_card_7815826 and gift_card_123",
        ["pm_77x", "4111 1111 1111 1111", "GB82WEST12345698765432", "7815826", "gift_card_123"],
        ['"payment_id": "[PAYMENT_', '"card": "[PAYMENT_', "paid with [PAYMENT_"],
    ),
    (
        "answer-bearing literals, any case",
        "The total is $1,628 (1628 USD) for 3 passengers. Cabin: BUSINESS.",
        ["1,628", "1628", "BUSINESS"],
        # one-character literals ("3") are too common to mask (min_literal_chars)
        ["The total is [ANSWER_1] ([ANSWER_1] USD) for 3 passengers. Cabin: [GOLD_"],
    ),
]


@pytest.mark.parametrize("text,secrets,kept", [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED])
def test_planted_secrets_are_masked_and_structure_kept(text, secrets, kept):
    out = Sanitizer(SanitizerConfig(), PRIVATE)(text)
    for secret in secrets:
        assert secret.lower() not in out.lower(), f"{secret!r} leaked: {out}"
    for piece in kept:
        assert piece in out, f"{piece!r} lost: {out}"


def test_json_observation_stays_json_with_its_keys():
    observation = json.dumps(
        {
            "user_id": "mia_li_3668",
            "payment_methods": {"credit_card_4421486": {"brand": "visa"}},
            "password": "s3cret",
            "reservations": ["ZFA04Y", "NO6JO3"],
        }
    )
    out = json.loads(Sanitizer(SanitizerConfig(), PRIVATE)(observation))
    assert set(out) == {"user_id", "payment_methods", "password", "reservations"}
    assert out["user_id"] == "mia_li_3668"  # policy-visible and not private: kept
    assert out["password"].startswith("[CREDENTIAL_")
    assert out["reservations"][1] == "NO6JO3" and out["reservations"][0].startswith("[GOLD_")
    assert list(out["payment_methods"]) == ["[PAYMENT_1]"]


def test_same_value_same_placeholder_across_siblings():
    sanitize = Sanitizer(SanitizerConfig(), PRIVATE)
    first = sanitize("use credit_card_7815826 on ZFA04Y")
    second = sanitize("ZFA04Y again, card credit_card_7815826, then gift_card_9")
    assert first == "use [PAYMENT_1] on [GOLD_1]"
    assert second == "[GOLD_1] again, card [PAYMENT_1], then [PAYMENT_2]"
    assert set(sanitize.masked) == {"credit_card_7815826", "zfa04y", "gift_card_9"}
    # Labels count as hidden before they occur; one-character ones never do.
    assert set(sanitize.hidden_values) == set(sanitize.masked) | {"hat170", "business", "$1,628"}


def test_evaluator_fields_of_the_episode_never_reach_the_trace():
    episode = make_episode(
        [("assistant", "Checking."), ("tool", '{"ok": true}'), ("assistant", "Done.")],
        1.0,
        reward_components={"db": 1.0, "communicate_SECRET_EXPECTED": 0.0},
        termination_reason="agent_stop_EVALUATOR_NOTE",
    )
    trace = render_trace(episode, Sanitizer(SanitizerConfig(), PRIVATE))
    assert "SECRET_EXPECTED" not in trace and "EVALUATOR_NOTE" not in trace
    assert trace.splitlines() == [
        "[step 1] assistant: Checking.",
        '[step 2] tool: {"ok": true}',
        "[step 3] assistant: Done.",
    ]


def test_short_literals_are_left_alone():
    sanitize = Sanitizer(
        SanitizerConfig(min_literal_chars=2), PrivateValues(answer_literals=("7",))
    )
    assert sanitize("7 bags, 17 kg") == "7 bags, 17 kg"


def test_from_labels_flattens_leaves():
    values = PrivateValues.from_labels([{"a": {"b": ["x", 2]}, "c": None, "d": True}], ["y"])
    assert values == PrivateValues(gold_literals=("x", "2"), answer_literals=("y",))


def test_literal_token_mask_marks_every_overlapping_token():
    tokens = ["The", " total", " is", " $1", ",6", "28", ".", " ZFA", "04Y"]
    mask = literal_token_mask(tokens, ["1,628", "zfa04y", "absent"])
    assert mask == [False, False, False, True, True, True, False, True, True]
