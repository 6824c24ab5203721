//! Per-job MCP servers (`providerOptions.mcpServers`, docs/providers.md): read once from the request into `McpServers`,
//! checked against the worker's `McpPolicy`, and handed to a provider that renders them in its CLI's own config
//! shape and writes that config into the job's private folder.
//!
//! The request's shape is Claude Code's `--mcp-config`: `{"<name>": {"command", "args", "env"} | {"type": "http",
//! "url", "headers"}}`. Env and header values are credentials: they are kept as `Secret`s, go to the job's
//! redactor (`McpServers::secrets`) and are never echoed in an error.

mod parse;

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{Map, Value, json};

use super::{ProviderRequest, RunContext, private_files::write_private};
use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::Secret,
};

/// What a job's MCP servers may be on this worker, from its settings.
#[derive(Clone, Debug, Default)]
pub struct McpPolicy {
    /// `MCP_ALLOWED_COMMANDS`: the programs a stdio server may be, compared exactly (a name looked up on `PATH`,
    /// or an absolute path). None: any; the agent can run commands in its sandbox anyway.
    pub allowed_commands: Option<Vec<String>>,
    /// `CALLBACK_ALLOWED_HOSTS`: the hosts an http server may be on, as for the completion webhook.
    pub allowed_hosts: Vec<String>,
    /// `CALLBACK_ALLOW_INSECURE`: plain http, for tests against loopback.
    pub allow_insecure: bool,
}

/// The MCP servers of one job, checked; in name order.
#[derive(Clone, Debug, Default)]
pub struct McpServers(Vec<McpServer>);

#[derive(Clone, Debug)]
pub struct McpServer {
    /// Letters, digits, `_` and `-`: it becomes part of tool names (`mcp__<name>__<tool>`) and config keys.
    name: String,
    transport: McpTransport,
}

#[derive(Clone, Debug)]
pub enum McpTransport {
    /// A program the CLI starts and talks to over stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: SecretValues,
    },
    /// A server the CLI reaches over streamable HTTP; the URL passed the callback URL policy.
    Http { url: url::Url, headers: SecretValues },
}

/// Named values that are credentials (a server's env or headers). `Debug` shows the names only.
#[derive(Clone, Debug, Default)]
pub struct SecretValues(BTreeMap<String, Secret>);

impl ProviderRequest {
    /// Takes `providerOptions.mcpServers` out of the options, checked against the worker's policy, so that the
    /// provider parses the rest into its own options as usual. Only a provider whose CLI can run MCP servers
    /// calls it; for every other one `input::options` refuses the field by name.
    pub fn take_mcp_servers(&mut self) -> Result<McpServers, ApiError> {
        match self
            .options
            .as_mut()
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(FIELD_NAME))
        {
            None | Some(Value::Null) => Ok(McpServers::default()),
            Some(value) => parse::servers(value, &self.mcp_policy),
        }
    }
}

/// The option's name inside `providerOptions`.
pub use super::input::MCP_SERVERS_FIELD as FIELD_NAME;

impl McpServers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &McpServer> {
        self.0.iter()
    }

    /// Every env and header value, for the job's redactor (a header `Bearer <token>` gives the token too).
    pub fn secrets(&self) -> Vec<&str> {
        self.0
            .iter()
            .flat_map(|server| match &server.transport {
                McpTransport::Stdio { env, .. } => env.secrets(),
                McpTransport::Http { headers, .. } => headers.secrets(),
            })
            .collect()
    }

    /// `{"<name>": entry(server), …}`: the object of servers that every CLI's config holds under its own key.
    pub fn to_json(&self, entry: impl Fn(&McpServer) -> Value) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|server| (server.name.clone(), entry(server)))
                .collect::<Map<_, _>>(),
        )
    }
}

impl McpServers {
    /// The servers as ACP's `session/new` takes them: a list, with env and headers as name/value pairs.
    pub fn to_acp(&self) -> Vec<Value> {
        let pairs = |values: &SecretValues| -> Vec<Value> {
            values
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect()
        };
        self.0
            .iter()
            .map(|server| match &server.transport {
                McpTransport::Stdio { command, args, env } => {
                    json!({"name": server.name, "command": command, "args": args, "env": pairs(env)})
                }
                McpTransport::Http { url, headers } => {
                    json!({"type": "http", "name": server.name, "url": url.as_str(), "headers": pairs(headers)})
                }
            })
            .collect()
    }
}

impl McpServer {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn transport(&self) -> &McpTransport {
        &self.transport
    }

    /// The entry in the request's own shape, which is Claude Code's `--mcp-config` (and Gemini's `mcpServers`):
    /// `{"type": "stdio", "command", "args", "env"}` or `{"type": "http", "url", "headers"}`.
    pub fn standard_entry(&self) -> Value {
        match &self.transport {
            McpTransport::Stdio { command, args, env } => {
                json!({"type": "stdio", "command": command, "args": args, "env": env.to_json()})
            }
            McpTransport::Http { url, headers } => {
                json!({"type": "http", "url": url.as_str(), "headers": headers.to_json()})
            }
        }
    }
}

impl SecretValues {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.expose()))
    }

    /// `{"<name>": "<value>"}`, values exposed: only for a config file written with `write_config`.
    pub fn to_json(&self) -> Value {
        Value::Object(self.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
    }

    fn secrets(&self) -> Vec<&str> {
        self.0
            .values()
            .map(Secret::expose)
            .flat_map(|value| {
                // `Authorization: Bearer <token>`: the token can show up on its own.
                let credential = value.split_once(' ').map(|(_, rest)| rest.trim());
                std::iter::once(value).chain(credential)
            })
            .collect()
    }
}

/// Writes a CLI config that holds a job's MCP servers (so their credentials) as `file_name` in the job's private
/// folder, mode 0600 from the first byte; the folder goes with the job. Returns the file's path for the command
/// line.
pub async fn write_config(ctx: &RunContext<'_>, file_name: &str, document: &Value) -> Result<PathBuf, Failure> {
    let path = ctx.private_dir.join(file_name);
    write_private(&path, document.to_string().as_bytes())
        .await
        .map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not write the MCP server config: {e}"),
            )
        })?;
    Ok(path)
}

/// A JSON value as a TOML inline value, for a CLI that takes its config in TOML (Codex's
/// `-c mcp_servers.<name>=<value>`): objects become inline tables, `null` members are left out (TOML has none).
pub fn toml_inline(value: &Value) -> String {
    match value {
        Value::Null => "\"\"".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_string(s),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_inline).collect::<Vec<_>>().join(", ")),
        Value::Object(members) => {
            // Keys sorted, whatever order serde_json's maps keep: the same options give the same command line.
            let sorted: std::collections::BTreeMap<_, _> = members.iter().collect();
            let members: Vec<String> = sorted
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", toml_string(k), toml_inline(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

/// A TOML basic string: JSON's escaping would leave DEL raw, which TOML forbids.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, path::Path};

    use super::*;

    fn servers(value: Value) -> McpServers {
        parse::servers(value, &McpPolicy::default()).unwrap()
    }

    #[test]
    fn the_standard_entry_is_the_requests_shape_with_its_type_spelled_out() {
        let servers = servers(json!({
            "files": {"command": "npx", "args": ["-y", "server-files"], "env": {"TOKEN": "env-secret-1"}},
        }));
        assert_eq!(
            servers.to_json(McpServer::standard_entry),
            json!({"files": {"type": "stdio", "command": "npx", "args": ["-y", "server-files"],
                "env": {"TOKEN": "env-secret-1"}}})
        );
    }

    #[test]
    fn env_and_header_values_are_secrets_and_debug_hides_them() {
        let policy = McpPolicy {
            allowed_hosts: vec!["mcp.example.com".into()],
            ..McpPolicy::default()
        };
        let servers = parse::servers(
            json!({
                "local": {"command": "srv", "env": {"A": "env-secret-1", "B": "short"}},
                "remote": {"type": "http", "url": "https://mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer header-token-2"}},
            }),
            &policy,
        )
        .unwrap();

        let mut secrets = servers.secrets();
        secrets.sort();

        // The redactor drops values too short to redact ("short") on its own.
        assert_eq!(
            secrets,
            ["Bearer header-token-2", "env-secret-1", "header-token-2", "short"]
        );
        let shown = format!("{servers:?}");
        assert!(!shown.contains("secret-1") && !shown.contains("token-2"), "{shown}");
    }

    #[test]
    fn toml_inline_quotes_every_key_and_escapes_what_toml_forbids_raw() {
        let value = json!({"command": "python3", "args": ["a \"b\"", "c\\d"], "env": {"X-Key": "line\nbreak\u{7f}"},
            "skipped": null, "on": true});
        assert_eq!(
            toml_inline(&value),
            r#"{"args" = ["a \"b\"", "c\\d"], "command" = "python3", "env" = {"X-Key" = "line\nbreak\u007F"}, "on" = true}"#
        );
        assert_eq!(toml_inline(&json!({})), "{}");
    }

    #[tokio::test]
    async fn a_config_is_written_private_into_the_jobs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = RunContext {
            binary: Path::new("cli"),
            workdir: Path::new("/w"),
            private_dir: dir.path(),
            prompt: "",
            resume_session_id: None,
            broker_until: None,
        };

        let path = write_config(&ctx, "mcp.json", &json!({"mcpServers": {}}))
            .await
            .unwrap();

        assert_eq!(path, dir.path().join("mcp.json"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"mcpServers":{}}"#);
    }
}
