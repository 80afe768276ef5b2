"""The Qwen2.5 ChatML rendering: tools in the system turn, call history, tool responses."""

import json

import pytest

from voice_agent.local_llm.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    ChatFormatError,
    render_messages,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def test_plain_conversation_uses_given_system_prompt_and_ends_with_generation_prompt():
    prompt = render_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_missing_system_prompt_falls_back_to_qwen_default():
    prompt = render_messages([{"role": "user", "content": "Hi"}])
    assert prompt.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n")


def test_tools_are_rendered_in_the_system_turn_as_json_lines_inside_tools_tags():
    prompt = render_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], TOOLS
    )
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in system
    assert (
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        in system
    )


def test_assistant_tool_calls_with_null_content_render_as_tool_call_blocks():
    prompt = render_messages(
        [
            {"role": "user", "content": "Status of 1 and 2?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "get_order_status", "arguments": '{"order_id": "1"}'},
                    },
                    {
                        "id": "b",
                        "type": "function",
                        "function": {"name": "get_order_status", "arguments": '{"order_id": "2"}'},
                    },
                ],
            },
        ],
        TOOLS,
        add_generation_prompt=False,
    )
    assert prompt.endswith(
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "1"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "2"}}\n</tool_call>'
        "<|im_end|>\n"
    )


def test_assistant_text_precedes_its_tool_calls():
    prompt = render_messages(
        [
            {"role": "user", "content": "Status?"},
            {
                "role": "assistant",
                "content": "One moment.",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "get_order_status", "arguments": "{}"},
                    }
                ],
            },
        ],
        add_generation_prompt=False,
    )
    assert "<|im_start|>assistant\nOne moment.\n<tool_call>\n" in prompt


def test_consecutive_tool_messages_share_one_user_turn_of_tool_responses():
    prompt = render_messages(
        [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "a", "content": '{"status": "shipped"}'},
            {"role": "tool", "tool_call_id": "b", "content": '{"status": "lost"}'},
            {"role": "user", "content": "thanks"},
        ]
    )
    assert (
        '<|im_start|>user\n<tool_response>\n{"status": "shipped"}\n</tool_response>\n'
        '<tool_response>\n{"status": "lost"}\n</tool_response><|im_end|>\n'
        "<|im_start|>user\nthanks<|im_end|>\n"
    ) in prompt


def test_content_parts_are_joined_and_unknown_roles_rejected():
    prompt = render_messages(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    assert "<|im_start|>user\nab<|im_end|>" in prompt
    with pytest.raises(ChatFormatError):
        render_messages([{"role": "wizard", "content": "x"}])


def test_the_head_of_a_follow_up_is_known_before_the_results_arrive():
    from voice_agent.local_llm.chat_format import tool_results_head

    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where are orders 58213 and 771?"},
    ]
    calls = [
        ("c1", "get_order_status", '{"order_id": "58213"}'),
        ("c2", "get_order_status", '{"order_id": "771"}'),
    ]
    head = tool_results_head(messages, TOOLS, calls)
    assistant = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            for cid, name, arguments in calls
        ],
    }
    for outcome in (
        {"status": "resolved", "result": {"status": "shipped"}},
        {"status": "failed", "error": "no such order"},
        {"status": "pending", "future": "f1"},
        {"status": "awaiting_confirmation"},
    ):
        results = [
            {"role": "tool", "tool_call_id": cid, "content": json.dumps(outcome)}
            for cid, _, _ in calls
        ]
        follow_up = render_messages([*messages, assistant, *results], TOOLS, readable_results=True)
        assert follow_up.startswith(head), outcome
    assert head.endswith('<tool_response>\nget_order_status(order_id="58213")')
