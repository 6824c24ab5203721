//! Cursor end to end with a scripted `cursor-agent` (CURSOR_BIN) that prints Cursor's documented stream-json
//! format: the real CLI is in no registry this project can reach.

use serde_json::json;

use crate::support::{FakeCli, TestWorker, sse::assert_well_formed, sse::kinds};

const KEY: &str = "cursor-key-canary-5f0d2a9e77";

/// Behaves like `cursor-agent -p --output-format stream-json --force`: reads the prompt from stdin, writes the
/// file it was asked for in its working directory, and reports each step. (`printf`, not `echo`: dash's echo
/// would turn the `\n` inside the JSON into a real line break.)
const AGENT: &str = r#"
printf '%s\n' "$@" > "$DIR/args"
cat > "$DIR/prompt"
[ -n "$CURSOR_API_KEY" ] || { echo "Error: Authentication required. Set CURSOR_API_KEY" >&2; exit 1; }
printf '%s' "$CURSOR_API_KEY" > "$DIR/key"
S=c0ffee00-1111-4222-8333-444455556666
printf '%s\n' '{"type":"system","subtype":"init","apiKeySource":"env","cwd":"'"$PWD"'","session_id":"'$S'","model":"Claude 4 Sonnet","permissionMode":"default"}'
printf '%s\n' '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"(prompt)"}]},"session_id":"'$S'"}'
printf '%s\n' '{"type":"thinking","subtype":"delta","text":"A file is ","session_id":"'$S'"}'
printf '%s\n' '{"type":"thinking","subtype":"delta","text":"needed.","session_id":"'$S'"}'
printf '%s\n' '{"type":"thinking","subtype":"completed","session_id":"'$S'"}'
printf '%s\n' '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Creating notes.txt."}]},"session_id":"'$S'"}'
printf '%s\n' '{"type":"tool_call","subtype":"started","call_id":"call_1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt","fileText":"from cursor\n"}}},"session_id":"'$S'"}'
printf 'from cursor\n' > notes.txt
printf '%s\n' '{"type":"tool_call","subtype":"completed","call_id":"call_1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt","fileText":"from cursor\n"},"result":{"success":{"path":"'"$PWD"'/notes.txt","linesCreated":1,"fileSize":12}}}},"session_id":"'$S'"}'
printf '%s\n' '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Done."}]},"session_id":"'$S'"}'
printf '%s\n' '{"type":"result","subtype":"success","duration_ms":420,"duration_api_ms":300,"is_error":false,"result":"Creating notes.txt.Done.","session_id":"'$S'","request_id":"req-1"}'
"#;

fn cursor_worker(cli: &FakeCli) -> TestWorker {
    TestWorker::spawn(&[("CURSOR_BIN", cli.bin()), ("KEEP_WORKSPACE", "1")])
}

fn cursor_job(prompt: &str) -> serde_json::Value {
    json!({ "userRequest": prompt, "codingAssistantProvider": "cursor", "codingAssistantAccessToken": KEY })
}

#[tokio::test]
async fn cursor_writes_a_file_and_the_stream_tells_the_whole_story() {
    let cli = FakeCli::new(AGENT);
    let worker = cursor_worker(&cli);
    let mut body = cursor_job("Create notes.txt");
    body["workspace"] = json!("c");
    body["providerOptions"] = json!({ "model": "sonnet-4" });

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_eq!(
        kinds(&events),
        [
            "connected",
            "session",
            "thinking",
            "assistant_message",
            "tool_use",
            "tool_result",
            "assistant_message",
            "completed"
        ]
    );
    assert_eq!(events[2].data["text"], "A file is needed.");
    assert_eq!(events[4].data["name"], "write");
    assert_eq!(events[5].data["toolUseId"], "call_1");
    let done = &events.last().unwrap().data;
    assert_eq!(done["sessionId"], "c0ffee00-1111-4222-8333-444455556666");
    assert_eq!(done["durationMs"], 420);
    assert_eq!(
        std::fs::read_to_string(worker.workspace_dir.join("c/notes.txt")).unwrap(),
        "from cursor\n"
    );
    // The prompt went on stdin, the key in the environment, and neither on argv.
    let args = std::fs::read_to_string(cli.file("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        ["-p", "--output-format", "stream-json", "--force", "--model", "sonnet-4"]
    );
    assert_eq!(std::fs::read_to_string(cli.file("prompt")).unwrap(), "Create notes.txt");
    assert_eq!(std::fs::read_to_string(cli.file("key")).unwrap(), KEY);
    let all: String = events.iter().map(|e| e.data.to_string()).collect();
    assert!(!all.contains(KEY));
}

#[tokio::test]
async fn a_cursor_stream_that_ends_without_a_result_is_provider_failed_with_exit_code_and_stderr() {
    let cli = FakeCli::new(
        r#"cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"c-9","model":"m"}'
echo '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Working"}]},"session_id":"c-9"}'
echo 'ConnectError: [unavailable] upstream connect error' >&2
exit 2"#,
    );
    let worker = cursor_worker(&cli);

    let events = worker.execute(&cursor_job("hello")).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "provider_failed", "{end}");
    assert_eq!(end["exitCode"], 2);
    assert!(
        end["stderrTail"].as_str().unwrap().contains("upstream connect error"),
        "{end}"
    );
    assert_eq!(end["sessionId"], "c-9");
}

#[tokio::test]
async fn cursor_without_any_key_is_auth_failed_before_it_starts() {
    let cli = FakeCli::new("touch \"$DIR/started\"");
    let worker = cursor_worker(&cli);
    let events = worker
        .execute(&json!({ "userRequest": "hi", "codingAssistantProvider": "cursor" }))
        .await
        .collect()
        .await;
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().data["code"], "auth_failed");
    assert!(!cli.file("started").exists());
}
