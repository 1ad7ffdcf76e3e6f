import pytest

from agents.tool_format import format_action, parse_action
from envs.core import AgentAction, ToolCall

CASES = [
    # (model text, content, calls, number of malformed blocks)
    ("Hello there.", "Hello there.", [], 0),
    (
        '<tool_call>{"name": "get_user_details", "arguments": {"user_id": "a_1"}}</tool_call>',
        "",
        [ToolCall("get_user_details", {"user_id": "a_1"})],
        0,
    ),
    (
        'Let me look.\n<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>',
        "Let me look.",
        [ToolCall("f", {"x": 1})],
        0,
    ),
    (
        '<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g"}</tool_call>',
        "",
        [ToolCall("f", {}), ToolCall("g", {})],
        0,
    ),
    ("<think>plan</think>ok", "<think>plan</think>ok", [], 0),
    ('<tool_call>{"name": "f", "arguments": {</tool_call>', "", [], 1),
    ('<tool_call>{"arguments": {}}</tool_call>', "", [], 1),
    ('<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>', "", [], 1),
    ('<tool_call>["f"]</tool_call>', "", [], 1),
    (
        'Sure. <tool_call>{"name": "f", "arguments": {"a": 1}}',
        "Sure.",
        [ToolCall("f", {"a": 1})],
        0,
    ),
    ("<tool_call>{not closed", "", [], 1),
    # Llama 3.1's form: the whole message one JSON object, "parameters" for the arguments
    ('{"name": "f", "parameters": {"a": 1}}', "", [ToolCall("f", {"a": 1})], 0),
    (' {"name": "f", "arguments": {}}\n', "", [ToolCall("f", {})], 0),
    ('{"a": 1}', '{"a": 1}', [], 0),
    ('{"name": "f"} and more', '{"name": "f"} and more', [], 0),
    # nested past Python's recursion limit: json raises RecursionError, not a decode error
    ("<tool_call>" + "[" * 100_000 + "</tool_call>", "", [], 1),
    ('<tool_call>{"name": "f", "arguments": "' + "[" * 100_000 + '"}</tool_call>', "", [], 1),
]


@pytest.mark.parametrize("text,content,calls,n_malformed", CASES)
def test_parse_action(text, content, calls, n_malformed):
    action = parse_action(text)
    assert action.content == content
    assert list(action.tool_calls) == calls
    assert len(action.malformed) == n_malformed


@pytest.mark.parametrize(
    "action",
    [
        AgentAction(content="Done."),
        AgentAction(tool_calls=(ToolCall("cancel_reservation", {"reservation_id": "X1"}),)),
        AgentAction(
            content="Checking.",
            tool_calls=(ToolCall("f", {"é": [1, {"b": None}]}), ToolCall("g", {})),
        ),
    ],
)
def test_format_then_parse_round_trips(action):
    assert parse_action(format_action(action)) == action
