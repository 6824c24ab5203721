//! The pure translations of the ACP bridge (docs/acp-server.md): a job's events into ACP `session/update`s and
//! permission requests, the editor's prompt into the job's message, and the editor's MCP servers into the
//! request's `providerOptions.mcpServers`. No I/O here, so each mapping is tested on recorded-format events.

use std::path::Path;

use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, Diff, McpServer, PermissionOption, PermissionOptionKind, Plan, PlanEntry,
    PlanEntryPriority, PlanEntryStatus, RequestPermissionRequest, SessionId, SessionUpdate, ToolCall, ToolCallContent,
    ToolCallStatus, ToolCallUpdate, ToolCallUpdateFields, ToolKind, Usage,
};
use serde_json::{Map, Value, json};

/// What one job event becomes in the editor: nothing (git progress, logs, the worker's own chatter), or updates.
/// `turn_started` becomes the user's message only in a replay: live, the editor already shows what it sent.
pub fn session_updates(event: &Value, replay: bool) -> Vec<SessionUpdate> {
    let text = || event["text"].as_str().unwrap_or_default().to_string();
    match event["type"].as_str().unwrap_or_default() {
        "turn_started" if replay => vec![SessionUpdate::UserMessageChunk(ContentChunk::new(text().into()))],
        "assistant_message" => vec![SessionUpdate::AgentMessageChunk(ContentChunk::new(text().into()))],
        "thinking" => vec![SessionUpdate::AgentThoughtChunk(ContentChunk::new(text().into()))],
        "tool_use" => {
            let name = event["name"].as_str().unwrap_or("tool");
            vec![SessionUpdate::ToolCall(
                ToolCall::new(str_of(&event["id"]), tool_title(name, &event["input"]))
                    .name(name.to_string())
                    .kind(tool_kind(name))
                    .status(ToolCallStatus::InProgress)
                    .raw_input(event["input"].clone()),
            )]
        }
        "tool_result" => {
            let failed = event["isError"].as_bool().unwrap_or(false);
            let output = match &event["output"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let mut fields = ToolCallUpdateFields::new().status(if failed {
                ToolCallStatus::Failed
            } else {
                ToolCallStatus::Completed
            });
            if !output.is_empty() {
                fields = fields
                    .content(vec![ToolCallContent::from(output.clone())])
                    .raw_output(json!(output));
            }
            vec![SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                str_of(&event["toolUseId"]),
                fields,
            ))]
        }
        "plan" => {
            let entries = event["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    PlanEntry::new(
                        e["content"].as_str().unwrap_or_default(),
                        match e["priority"].as_str() {
                            Some("high") => PlanEntryPriority::High,
                            Some("low") => PlanEntryPriority::Low,
                            _ => PlanEntryPriority::Medium,
                        },
                        match e["status"].as_str() {
                            Some("in_progress") => PlanEntryStatus::InProgress,
                            Some("completed") => PlanEntryStatus::Completed,
                            _ => PlanEntryStatus::Pending,
                        },
                    )
                })
                .collect();
            vec![SessionUpdate::Plan(Plan::new(entries))]
        }
        _ => Vec::new(),
    }
}

/// The editor's question for a `permission_request`: the tool call it is about (with the file's diff, when the
/// agent wants to edit one) and the agent's own options, whose ids are what the worker takes back.
pub fn permission_request(session_id: &SessionId, event: &Value) -> RequestPermissionRequest {
    let tool_call_id = match event["toolCallId"].as_str() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => str_of(&event["requestId"]),
    };
    let mut fields = ToolCallUpdateFields::new()
        .title(event["title"].as_str().map(String::from))
        .kind(event["kind"].as_str().map(kind_named));
    if !event["input"].is_null() {
        fields = fields.raw_input(event["input"].clone());
    }
    if let Some(path) = event["diff"]["path"].as_str() {
        let diff = Diff::new(path, event["diff"]["newText"].as_str().unwrap_or_default())
            .old_text(event["diff"]["oldText"].as_str().map(String::from));
        fields = fields.content(vec![ToolCallContent::from(diff)]);
    }
    let options = event["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            PermissionOption::new(
                str_of(&o["optionId"]),
                o["name"].as_str().unwrap_or_default(),
                match o["kind"].as_str() {
                    Some("allow_always") => PermissionOptionKind::AllowAlways,
                    Some("reject_once") => PermissionOptionKind::RejectOnce,
                    Some("reject_always") => PermissionOptionKind::RejectAlways,
                    _ => PermissionOptionKind::AllowOnce,
                },
            )
        })
        .collect();
    RequestPermissionRequest::new(session_id.clone(), ToolCallUpdate::new(tool_call_id, fields), options)
}

/// A turn's token counts (`turn_completed.usage`) as the prompt's reply carries them.
pub fn turn_usage(event: &Value) -> Option<Usage> {
    let usage = event.get("usage").filter(|u| u.is_object())?;
    let count = |name: &str| usage[name].as_u64().unwrap_or(0);
    let (input, output) = (count("inputTokens"), count("outputTokens"));
    let (read, created) = (count("cacheReadTokens"), count("cacheCreationTokens"));
    Some(
        Usage::new(input + output + read + created, input, output)
            .cached_read_tokens(read)
            .cached_write_tokens(created),
    )
}

/// A prompt the bridge cannot forward as text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("this agent takes text and resource links; the prompt has {0}")]
pub struct UnsupportedContent(&'static str);

/// The job's message for an editor prompt: the text blocks as they are, each resource link as `@path` (relative
/// to the session's folder when it lies inside it, as the file lies in the job's work tree), or its URI.
pub fn prompt_text(blocks: &[ContentBlock], cwd: &Path) -> Result<String, UnsupportedContent> {
    let mut parts = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block {
            ContentBlock::Text(text) => parts.push(text.text.clone()),
            ContentBlock::ResourceLink(link) => {
                let relative = link
                    .uri
                    .strip_prefix("file://")
                    .and_then(|path| Path::new(path).strip_prefix(cwd).ok())
                    .map(|p| p.display().to_string());
                parts.push(format!("@{}", relative.unwrap_or_else(|| link.uri.clone())));
            }
            ContentBlock::Image(_) => return Err(UnsupportedContent("an image")),
            ContentBlock::Audio(_) => return Err(UnsupportedContent("audio")),
            ContentBlock::Resource(_) => return Err(UnsupportedContent("an embedded resource")),
            _ => return Err(UnsupportedContent("a content block of an unknown kind")),
        }
    }
    Ok(parts.join("\n"))
}

/// The editor's MCP servers in the request's form (docs/api.md, `providerOptions.mcpServers`); the worker checks
/// them against its policy (`MCP_ALLOWED_COMMANDS`) when the job starts. `None` for an empty list.
pub fn mcp_servers(servers: &[McpServer]) -> Result<Option<Value>, String> {
    let mut out = Map::new();
    for server in servers {
        let (name, value) = match server {
            McpServer::Stdio(s) => (
                &s.name,
                json!({
                    "type": "stdio",
                    "command": s.command.display().to_string(),
                    "args": s.args,
                    "env": s.env.iter().map(|e| (e.name.clone(), json!(e.value))).collect::<Map<_, _>>(),
                }),
            ),
            McpServer::Http(s) => (
                &s.name,
                json!({
                    "type": "http",
                    "url": s.url,
                    "headers": s.headers.iter().map(|h| (h.name.clone(), json!(h.value))).collect::<Map<_, _>>(),
                }),
            ),
            McpServer::Sse(s) => {
                return Err(format!(
                    "MCP server {:?}: the worker takes stdio and http MCP servers, not sse",
                    s.name
                ));
            }
            _ => return Err("an MCP server of a kind the worker does not take".into()),
        };
        out.insert(name.clone(), value);
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn str_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A short title for the editor's tool list: the tool and the one input field that says what it acts on.
fn tool_title(name: &str, input: &Value) -> String {
    let subject = ["path", "file_path", "filePath", "command", "pattern", "url", "query"]
        .iter()
        .find_map(|key| input[*key].as_str());
    match subject {
        // Some CLIs name the call after what it acts on already.
        Some(subject) if !name.contains(subject) => format!("{name} {subject}"),
        _ => name.to_string(),
    }
}

/// The events carry the CLI's own tool names; the editor groups tool calls by ACP's kinds.
fn tool_kind(name: &str) -> ToolKind {
    let name = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    if has(&["write", "edit", "create", "patch", "replace", "str_replace"]) {
        ToolKind::Edit
    } else if has(&["delete", "remove"]) {
        ToolKind::Delete
    } else if has(&["read", "view", "cat"]) {
        ToolKind::Read
    } else if has(&["grep", "glob", "search", "find", "list", "ls"]) {
        ToolKind::Search
    } else if has(&["bash", "shell", "exec", "command", "run"]) {
        ToolKind::Execute
    } else if has(&["fetch", "web"]) {
        ToolKind::Fetch
    } else if has(&["think", "todo", "plan"]) {
        ToolKind::Think
    } else {
        ToolKind::Other
    }
}

/// A `permission_request`'s `kind` is ACP's already.
fn kind_named(kind: &str) -> ToolKind {
    serde_json::from_value(json!(kind)).unwrap_or(ToolKind::Other)
}

#[cfg(test)]
mod tests {
    use agent_client_protocol::v1::schema::{ResourceLink, TextContent};

    use super::*;

    fn wire(update: &SessionUpdate) -> Value {
        serde_json::to_value(update).unwrap()
    }

    #[test]
    fn messages_thoughts_and_tool_calls_become_their_updates() {
        let chunk = session_updates(&json!({"type": "assistant_message", "text": "Done."}), false);
        assert_eq!(
            wire(&chunk[0]),
            json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Done."}})
        );
        let thought = session_updates(&json!({"type": "thinking", "text": "hm"}), false);
        assert_eq!(wire(&thought[0])["sessionUpdate"], "agent_thought_chunk");
        let call = session_updates(
            &json!({"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "a.txt"}}),
            false,
        );
        let call = wire(&call[0]);
        assert_eq!(call["sessionUpdate"], "tool_call");
        assert_eq!(call["toolCallId"], "t1");
        assert_eq!(call["title"], "Write a.txt");
        assert_eq!(call["kind"], "edit");
        assert_eq!(call["status"], "in_progress");
        assert_eq!(call["rawInput"]["file_path"], "a.txt");
        let done = session_updates(
            &json!({"type": "tool_result", "toolUseId": "t1", "output": "ok", "isError": false}),
            false,
        );
        let done = wire(&done[0]);
        assert_eq!(done["sessionUpdate"], "tool_call_update");
        assert_eq!(done["toolCallId"], "t1");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["content"][0]["content"]["text"], "ok");
        let failed = session_updates(
            &json!({"type": "tool_result", "toolUseId": "t2", "isError": true}),
            false,
        );
        assert_eq!(wire(&failed[0])["status"], "failed");
    }

    #[test]
    fn a_turn_start_is_the_users_message_only_in_a_replay() {
        let started = json!({"type": "turn_started", "turn": 1, "text": "write a.txt"});
        assert!(session_updates(&started, false).is_empty());
        let replayed = wire(&session_updates(&started, true)[0]);
        assert_eq!(replayed["sessionUpdate"], "user_message_chunk");
        assert_eq!(replayed["content"]["text"], "write a.txt");
        for quiet in [
            "log",
            "git_changes",
            "github_pull_progress",
            "message",
            "connected",
            "permission_resolved",
        ] {
            assert!(
                session_updates(&json!({"type": quiet, "text": "x"}), false).is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn a_plan_keeps_its_entries() {
        let plan = session_updates(
            &json!({"type": "plan", "entries": [
                {"content": "read", "status": "completed", "priority": "high"},
                {"content": "write", "status": "in_progress", "priority": "low"}]}),
            false,
        );
        assert_eq!(
            wire(&plan[0]),
            json!({"sessionUpdate": "plan", "entries": [
                {"content": "read", "status": "completed", "priority": "high"},
                {"content": "write", "status": "in_progress", "priority": "low"}]})
        );
    }

    #[test]
    fn a_permission_request_carries_the_diff_and_the_agents_options() {
        let question = json!({"type": "permission_request", "requestId": "perm-1", "toolCallId": "call_1",
            "title": "Write hello.txt", "kind": "edit", "input": null,
            "diff": {"path": "/w/hello.txt", "oldText": null, "newText": "hi\n"},
            "options": [{"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                        {"optionId": "no", "name": "Reject", "kind": "reject_once"}]});
        let asked = serde_json::to_value(permission_request(&SessionId::new("s"), &question)).unwrap();
        assert_eq!(asked["sessionId"], "s");
        assert_eq!(asked["toolCall"]["toolCallId"], "call_1");
        assert_eq!(asked["toolCall"]["title"], "Write hello.txt");
        assert_eq!(asked["toolCall"]["kind"], "edit");
        assert_eq!(
            asked["toolCall"]["content"][0],
            json!({"type": "diff", "path": "/w/hello.txt", "newText": "hi\n"})
        );
        assert_eq!(
            asked["options"],
            json!([{"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                   {"optionId": "no", "name": "Reject", "kind": "reject_once"}])
        );
    }

    #[test]
    fn a_turns_usage_adds_up() {
        let usage = turn_usage(
            &json!({"usage": {"inputTokens": 10, "outputTokens": 5, "cacheReadTokens": 2,
            "cacheCreationTokens": 1}}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(usage).unwrap(),
            json!({"totalTokens": 18, "inputTokens": 10, "outputTokens": 5, "cachedReadTokens": 2,
                   "cachedWriteTokens": 1})
        );
        assert!(turn_usage(&json!({"usage": null})).is_none());
    }

    #[test]
    fn prompts_take_text_and_links_and_refuse_the_rest() {
        let cwd = Path::new("/home/me/app");
        let blocks = vec![
            ContentBlock::Text(TextContent::new("look at")),
            ContentBlock::ResourceLink(ResourceLink::new("main.rs", "file:///home/me/app/src/main.rs")),
            ContentBlock::ResourceLink(ResourceLink::new("notes", "https://example.com/notes")),
        ];
        assert_eq!(
            prompt_text(&blocks, cwd).unwrap(),
            "look at\n@src/main.rs\n@https://example.com/notes"
        );
        let image: ContentBlock =
            serde_json::from_value(json!({"type": "image", "data": "", "mimeType": "image/png"})).unwrap();
        assert_eq!(prompt_text(&[image], cwd), Err(UnsupportedContent("an image")));
    }

    #[test]
    fn the_editors_mcp_servers_take_the_requests_form() {
        let servers: Vec<McpServer> = serde_json::from_value(json!([
            {"name": "docs", "command": "/usr/bin/docs-mcp", "args": ["--stdio"], "env": [{"name": "K", "value": "v"}]},
            {"type": "http", "name": "issues", "url": "https://mcp.example/mcp", "headers": []}
        ]))
        .unwrap();
        assert_eq!(
            mcp_servers(&servers).unwrap().unwrap(),
            json!({"docs": {"type": "stdio", "command": "/usr/bin/docs-mcp", "args": ["--stdio"], "env": {"K": "v"}},
                   "issues": {"type": "http", "url": "https://mcp.example/mcp", "headers": {}}})
        );
        assert_eq!(mcp_servers(&[]).unwrap(), None);
        let sse: Vec<McpServer> =
            serde_json::from_value(json!([{"type": "sse", "name": "old", "url": "https://x", "headers": []}])).unwrap();
        assert!(mcp_servers(&sse).unwrap_err().contains("not sse"));
    }
}
