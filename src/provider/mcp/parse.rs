//! `providerOptions.mcpServers` from JSON, by hand rather than through serde: every refusal names its field
//! down to the env variable or header (`providerOptions.mcpServers.<name>.env.<VAR>`), and none repeats a value,
//! since env and header values are credentials and serde's messages quote what they reject.
//! A wrong JSON type is a 400, anything else a 422, as for the rest of the request (docs/api.md).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{FIELD_NAME, McpPolicy, McpServer, McpServers, McpTransport, SecretValues};
use crate::{error::ApiError, provider::input::OPTIONS_FIELD, secret::Secret, url_policy::UrlPolicy};

/// Longer names make tool names (`mcp__<name>__<tool>`) that some model APIs refuse.
const MAX_NAME_LEN: usize = 64;

/// With `MCP_ALLOWED_COMMANDS` set, a server's env must not decide which program actually runs.
const PROGRAM_CHANGING_ENV: &[&str] = &["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"];

pub(super) fn servers(value: Value, policy: &McpPolicy) -> Result<McpServers, ApiError> {
    let root = format!("{OPTIONS_FIELD}.{FIELD_NAME}");
    let Value::Object(servers) = value else {
        return Err(wrong_type(&root, "an object of servers by name"));
    };
    // In name order whatever order serde_json's maps keep (the ACP crate turns on its `preserve_order`): the first
    // refusal and the CLIs' configurations must not depend on how the request spelled them.
    servers
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .map(|(name, spec)| server(&root, name, spec, policy))
        .collect::<Result<Vec<_>, _>>()
        .map(McpServers)
}

fn server(root: &str, name: String, spec: Value, policy: &McpPolicy) -> Result<McpServer, ApiError> {
    let field = format!("{root}.{name}");
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(ApiError::invalid(
            &field,
            format!("MCP server names are 1-{MAX_NAME_LEN} letters, digits, '_' or '-'"),
        ));
    }
    let Value::Object(mut spec) = spec else {
        return Err(wrong_type(&field, "an object"));
    };
    let at = |key: &str| format!("{field}.{key}");
    let http = match spec.remove("type") {
        None => false,
        Some(Value::String(kind)) => match kind.as_str() {
            "stdio" => false,
            "http" => true,
            _ => return Err(ApiError::invalid(at("type"), "type must be \"stdio\" or \"http\"")),
        },
        Some(_) => return Err(wrong_type(&at("type"), "a string")),
    };
    let known: &[&str] = if http {
        &["url", "headers"]
    } else {
        &["command", "args", "env"]
    };
    if let Some(unknown) = spec.keys().find(|key| !known.contains(&key.as_str())) {
        let kind = if http { "an http" } else { "a stdio" };
        return Err(ApiError::invalid(
            at(unknown),
            format!(
                "{unknown} is not a field of {kind} MCP server; expected {}",
                known.join(", ")
            ),
        ));
    }
    let transport = if http {
        McpTransport::Http {
            url: url(&at("url"), spec.remove("url"), policy)?,
            headers: values(&at("headers"), spec.remove("headers"), header_ok)?,
        }
    } else {
        let env = values(&at("env"), spec.remove("env"), env_name_ok)?;
        if policy.allowed_commands.is_some()
            && let Some(var) = env.0.keys().find(|k| PROGRAM_CHANGING_ENV.contains(&k.as_str()))
        {
            return Err(ApiError::invalid(
                format!("{}.{var}", at("env")),
                format!("{var} would change which program runs, and MCP_ALLOWED_COMMANDS is set on this worker"),
            ));
        }
        McpTransport::Stdio {
            command: command(&at("command"), spec.remove("command"), policy)?,
            args: strings(&at("args"), spec.remove("args"))?,
            env,
        }
    };
    Ok(McpServer { name, transport })
}

fn command(field: &str, value: Option<Value>, policy: &McpPolicy) -> Result<String, ApiError> {
    let command = match value {
        None => return Err(ApiError::invalid(field, format!("{field} is required"))),
        Some(Value::String(command)) => command,
        Some(_) => return Err(wrong_type(field, "a string")),
    };
    if command.trim().is_empty() || command.contains('\0') {
        return Err(ApiError::invalid(field, "command must be a program name or path"));
    }
    if let Some(allowed) = &policy.allowed_commands
        && !allowed.contains(&command)
    {
        return Err(ApiError::invalid(
            field,
            format!(
                "command {command:?} is not allowed on this worker (MCP_ALLOWED_COMMANDS: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(command)
}

fn strings(field: &str, value: Option<Value>) -> Result<Vec<String>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(wrong_type(field, "an array of strings")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.contains('\0') => Ok(s),
            Value::String(_) => Err(ApiError::invalid(format!("{field}[{i}]"), "arguments cannot hold NUL")),
            _ => Err(wrong_type(&format!("{field}[{i}]"), "a string")),
        })
        .collect()
}

/// An object of string values, each a credential; `name_ok` says whether a name (and its value) is usable.
fn values(
    field: &str,
    value: Option<Value>,
    name_ok: fn(&str, &str) -> Result<(), String>,
) -> Result<SecretValues, ApiError> {
    let entries: Map<String, Value> = match value {
        None | Some(Value::Null) => return Ok(SecretValues::default()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(wrong_type(field, "an object of strings")),
    };
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        let at = format!("{field}.{name}");
        let Value::String(value) = value else {
            return Err(wrong_type(&at, "a string"));
        };
        name_ok(&name, &value).map_err(|problem| ApiError::invalid(&at, problem))?;
        out.insert(name, Secret::new(value));
    }
    Ok(SecretValues(out))
}

fn env_name_ok(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err("env names must be non-empty, without '=' or NUL".into());
    }
    if value.contains('\0') {
        return Err("env values cannot hold NUL".into());
    }
    Ok(())
}

fn header_ok(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err("header names must be HTTP tokens".into());
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err("header values cannot hold line breaks or NUL".into());
    }
    Ok(())
}

fn url(field: &str, value: Option<Value>, policy: &McpPolicy) -> Result<url::Url, ApiError> {
    let raw = match value {
        None => return Err(ApiError::invalid(field, format!("{field} is required"))),
        Some(Value::String(raw)) => raw,
        Some(_) => return Err(wrong_type(field, "a string")),
    };
    UrlPolicy {
        allowed_hosts: &policy.allowed_hosts,
        allow_insecure: policy.allow_insecure,
    }
    .check(&raw)
    .map_err(|e| ApiError::invalid(field, format!("{field}: {e} (CALLBACK_ALLOWED_HOSTS)")))
}

fn wrong_type(field: &str, expected: &str) -> ApiError {
    ApiError::InvalidJson {
        message: format!("{field} must be {expected}"),
        field: Some(field.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use serde_json::json;

    use super::*;

    fn allow(commands: &[&str]) -> McpPolicy {
        McpPolicy {
            allowed_commands: Some(commands.iter().map(|c| c.to_string()).collect()),
            allowed_hosts: vec!["mcp.example.com".into()],
            allow_insecure: false,
        }
    }

    /// (status, field, message) of a refusal.
    fn refusal(value: Value, policy: &McpPolicy) -> (u16, String, String) {
        let err = servers(value, policy).unwrap_err();
        let status = err.status_code().as_u16();
        let message = err.to_string();
        match err {
            ApiError::InvalidRequest { field, .. } => (status, field, message),
            ApiError::InvalidJson { field, .. } => (status, field.unwrap_or_default(), message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn both_kinds_parse_in_name_order() {
        let parsed = servers(
            json!({
                "web": {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"X-Key": "k-123456789"}},
                "files": {"type": "stdio", "command": "srv", "args": ["--root", "/w"]},
            }),
            &allow(&["srv"]),
        )
        .unwrap();

        let names: Vec<&str> = parsed.iter().map(McpServer::name).collect();
        assert_eq!(names, ["files", "web"]);
        match parsed.iter().next().map(McpServer::transport) {
            Some(McpTransport::Stdio { command, args, env }) => {
                assert_eq!((command.as_str(), args.len(), env.iter().count()), ("srv", 2, 0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_refusal_names_its_field_and_wrong_types_are_400() {
        let open = McpPolicy {
            allowed_hosts: vec!["h".into()],
            ..McpPolicy::default()
        };
        for (value, status, field) in [
            (json!([]), 400, "providerOptions.mcpServers"),
            (json!({"a b": {"command": "x"}}), 422, "providerOptions.mcpServers.a b"),
            (json!({"s": "x"}), 400, "providerOptions.mcpServers.s"),
            (
                json!({"s": {"type": "sse", "url": "https://h"}}),
                422,
                "providerOptions.mcpServers.s.type",
            ),
            (json!({"s": {}}), 422, "providerOptions.mcpServers.s.command"),
            (
                json!({"s": {"command": " "}}),
                422,
                "providerOptions.mcpServers.s.command",
            ),
            (
                json!({"s": {"command": 1}}),
                400,
                "providerOptions.mcpServers.s.command",
            ),
            (
                json!({"s": {"command": "x", "args": ["a", 2]}}),
                400,
                "providerOptions.mcpServers.s.args[1]",
            ),
            (
                json!({"s": {"command": "x", "env": {"A=B": "v"}}}),
                422,
                "providerOptions.mcpServers.s.env.A=B",
            ),
            (
                json!({"s": {"command": "x", "env": {"A": 1}}}),
                400,
                "providerOptions.mcpServers.s.env.A",
            ),
            (
                json!({"s": {"command": "x", "url": "https://h"}}),
                422,
                "providerOptions.mcpServers.s.url",
            ),
            (json!({"s": {"type": "http"}}), 422, "providerOptions.mcpServers.s.url"),
            (
                json!({"s": {"type": "http", "url": "https://h", "command": "x"}}),
                422,
                "providerOptions.mcpServers.s.command",
            ),
            (
                json!({"s": {"type": "http", "url": "https://h", "headers": {"X": "a\r\nb"}}}),
                422,
                "providerOptions.mcpServers.s.headers.X",
            ),
        ] {
            let (got_status, got_field, _) = refusal(value.clone(), &open);
            assert_eq!((got_status, got_field.as_str()), (status, field), "{value}");
        }
    }

    #[test]
    fn http_servers_follow_the_callback_url_policy() {
        let policy = allow(&[]);
        for url in [
            "https://elsewhere.example.com/mcp",
            "http://mcp.example.com/mcp",
            "https://u:p@mcp.example.com/",
        ] {
            let (status, field, _) = refusal(json!({"web": {"type": "http", "url": url}}), &policy);
            assert_eq!(
                (status, field.as_str()),
                (422, "providerOptions.mcpServers.web.url"),
                "{url}"
            );
        }
        let (_, _, message) = refusal(json!({"web": {"type": "http", "url": "https://other.host/"}}), &policy);
        assert!(message.contains("CALLBACK_ALLOWED_HOSTS"), "{message}");
    }

    #[test]
    fn mcp_allowed_commands_refuses_any_other_program_and_a_path_that_would_swap_it() {
        let policy = allow(&["python3", "/opt/mcp/bin/server"]);
        assert!(
            servers(
                json!({"a": {"command": "python3"}, "b": {"command": "/opt/mcp/bin/server"}}),
                &policy
            )
            .is_ok()
        );
        for command in ["npx", "/usr/bin/python3", "python3 "] {
            let (status, field, message) = refusal(json!({"s": {"command": command}}), &policy);
            assert_eq!(
                (status, field.as_str()),
                (422, "providerOptions.mcpServers.s.command"),
                "{command}"
            );
            assert!(message.contains("MCP_ALLOWED_COMMANDS"), "{message}");
        }
        let (status, field, _) = refusal(json!({"s": {"command": "python3", "env": {"PATH": "/w/bin"}}}), &policy);
        assert_eq!((status, field.as_str()), (422, "providerOptions.mcpServers.s.env.PATH"));
        let open = McpPolicy::default();
        assert!(servers(json!({"s": {"command": "npx", "env": {"PATH": "/w/bin"}}}), &open).is_ok());
    }

    #[test]
    fn no_refusal_repeats_an_env_or_header_value() {
        let open = McpPolicy {
            allowed_hosts: vec!["h".into()],
            ..McpPolicy::default()
        };
        for value in [
            json!({"s": {"command": "x", "env": {"A": "secret-value-1\u{0}"}}}),
            json!({"s": {"command": "x", "env": "secret-value-1"}}),
            json!({"s": {"type": "http", "url": "https://h", "headers": {"X": "secret-value-1\n"}}}),
            json!({"s": {"type": "http", "url": "https://h", "headers": ["secret-value-1"]}}),
        ] {
            let (_, _, message) = refusal(value, &open);
            assert!(!message.contains("secret-value"), "{message}");
        }
    }
}
