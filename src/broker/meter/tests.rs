use serde_json::json;

use super::*;

/// Feeds `answer` in pieces of `size` bytes, so that lines and documents are cut anywhere.
fn meter(style: ApiStyle, events: bool, answer: &str, size: usize) -> (Usage, Option<String>) {
    let mut meter = CallMeter::new(style, events, None);
    for piece in answer.as_bytes().chunks(size) {
        meter.push(piece);
    }
    meter.finish()
}

fn usage(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
        ..Usage::default()
    }
}

fn sse(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| format!("event: x\ndata: {e}\n\n")).collect()
}

#[test]
fn anthropic_streams_take_input_from_message_start_and_output_from_the_last_message_delta() {
    let answer = sse(&[
        json!({"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage":
            {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 7}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "usage is 99"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 8}}),
        json!({"type": "message_stop"}),
    ]);
    for size in [1, 7, 4096] {
        let (usage_read, model) = meter(ApiStyle::Anthropic, true, &answer, size);
        assert_eq!(usage_read, usage(12, 8, 30, 7), "pieces of {size}");
        assert_eq!(model.as_deref(), Some("claude-sonnet-4-5"));
    }
}

#[test]
fn an_anthropic_message_carries_its_own_usage() {
    let answer = json!({"type": "message", "model": "claude-haiku-4-5", "content": [],
        "usage": {"input_tokens": 10, "output_tokens": 5}})
    .to_string();
    let (read, model) = meter(ApiStyle::Anthropic, false, &answer, 5);
    assert_eq!(read, usage(10, 5, 0, 0));
    assert_eq!(model.as_deref(), Some("claude-haiku-4-5"));
}

#[test]
fn openai_responses_count_cached_tokens_apart_streamed_or_not() {
    let completed = json!({"id": "resp_1", "model": "gpt-5.5", "usage": {"input_tokens": 100, "output_tokens": 10,
        "input_tokens_details": {"cached_tokens": 20}}});
    let streamed = sse(&[
        json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5.5", "usage": null}}),
        json!({"type": "response.output_text.delta", "delta": "hi"}),
        json!({"type": "response.completed", "response": completed}),
    ]);
    assert_eq!(
        meter(ApiStyle::OpenAiResponses, true, &streamed, 3),
        (usage(80, 10, 20, 0), Some("gpt-5.5".into()))
    );
    assert_eq!(
        meter(ApiStyle::OpenAiResponses, false, &completed.to_string(), 3),
        (usage(80, 10, 20, 0), Some("gpt-5.5".into()))
    );
}

#[test]
fn chat_completions_take_the_usage_chunk_and_ignore_done() {
    let streamed = format!(
        "{}data: [DONE]\n\n",
        sse(&[
            json!({"model": "mock-model", "choices": [{"delta": {"content": "hi"}}], "usage": null}),
            json!({"model": "mock-model", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 6,
                "prompt_tokens_details": {"cached_tokens": 5}}}),
        ])
    );
    assert_eq!(
        meter(ApiStyle::OpenAiChat, true, &streamed, 2),
        (usage(45, 6, 5, 0), Some("mock-model".into()))
    );
    let whole = json!({"object": "chat.completion", "model": "mock-model",
        "usage": {"prompt_tokens": 50, "completion_tokens": 6}});
    assert_eq!(
        meter(ApiStyle::OpenAiChat, false, &whole.to_string(), 9).0,
        usage(50, 6, 0, 0)
    );
}

#[test]
fn gemini_keeps_the_last_running_total_of_a_stream_and_reads_arrays() {
    let chunk = |candidates: u64| {
        json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}], "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": candidates,
                "thoughtsTokenCount": 2, "cachedContentTokenCount": 10}})
    };
    let streamed = sse(&[chunk(3), chunk(9)]);
    assert_eq!(
        meter(ApiStyle::Gemini, true, &streamed, 5),
        (usage(30, 11, 10, 0), Some("gemini-2.5-flash".into()))
    );
    let array = json!([chunk(3), chunk(9)]).to_string();
    assert_eq!(meter(ApiStyle::Gemini, false, &array, 5).0, usage(30, 11, 10, 0));
}

#[test]
fn an_answer_without_usage_counts_nothing() {
    let answer = "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"overloaded\"}}\n\n";
    assert_eq!(meter(ApiStyle::Anthropic, true, answer, 4).0, Usage::default());
    assert_eq!(meter(ApiStyle::Anthropic, false, "not json", 4).0, Usage::default());
}

#[test]
fn model_calls_are_told_by_their_path() {
    assert_eq!(ApiStyle::of_path("/v1/messages"), Some(ApiStyle::Anthropic));
    assert_eq!(ApiStyle::of_path("/v1/messages/count_tokens"), None);
    assert_eq!(ApiStyle::of_path("/v1/responses"), Some(ApiStyle::OpenAiResponses));
    assert_eq!(
        ApiStyle::of_path("/api/v1/chat/completions"),
        Some(ApiStyle::OpenAiChat)
    );
    let gemini = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    assert_eq!(ApiStyle::of_path(gemini), Some(ApiStyle::Gemini));
    assert_eq!(
        ApiStyle::Gemini.model_in_path(gemini).as_deref(),
        Some("gemini-2.5-flash")
    );
    assert_eq!(ApiStyle::of_path("/v1beta/models"), None);
}
