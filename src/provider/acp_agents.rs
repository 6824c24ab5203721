//! Operator-configured agents (`ACP_AGENTS`, docs/approvals.md): any program that speaks the Agent Client Protocol, as
//! provider `acp:<name>`, without code. The command comes from the worker's configuration only; a request picks
//! an agent by name and never names a program.

use std::sync::OnceLock;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{
    AcpPrepared, AcpSupport, Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext,
    Variables, env::child_env, input, mcp::McpServers,
};
use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
};

/// One entry of `ACP_AGENTS`: `{"command": ["program", "arg", …], "env": ["NAME", …]}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
}

/// `ACP_AGENTS` read: a JSON object of agent name → spec, every name and command checked.
pub fn parse(raw: &str) -> Result<Vec<(String, AgentSpec)>, String> {
    let agents: serde_json::Map<String, Value> =
        serde_json::from_str(raw).map_err(|e| format!("expected a JSON object of name → {{command, env}}: {e}"))?;
    let mut out = Vec::new();
    for (name, spec) in agents {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!("agent name {name:?}: use 1 to 64 of a-z, 0-9, '-' and '_'"));
        }
        let spec: AgentSpec = serde_json::from_value(spec).map_err(|e| format!("agent {name:?}: {e}"))?;
        if spec.command.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(format!("agent {name:?}: command must name a program"));
        }
        if let Some(bad) = spec.env.iter().find(|v| v.is_empty() || v.contains('=')) {
            return Err(format!("agent {name:?}: {bad:?} is not a variable name"));
        }
        out.push((name, spec));
    }
    Ok(out)
}

static AGENTS: OnceLock<Vec<&'static dyn Provider>> = OnceLock::new();

/// Makes the agents providers for the life of the process. The registry is fixed once a worker runs, so the first
/// configuration read wins (a process reads its settings once).
pub fn register(agents: Vec<(String, AgentSpec)>) {
    let _ = AGENTS.set(
        agents
            .into_iter()
            .map(|(name, spec)| -> &'static dyn Provider { Box::leak(Box::new(AcpAgent::new(&name, spec))) })
            .collect(),
    );
}

pub(super) fn registered() -> &'static [&'static dyn Provider] {
    AGENTS.get().map(Vec::as_slice).unwrap_or_default()
}

struct AcpAgent {
    name: &'static str,
    binary: Binary,
    args: Vec<String>,
    variables: Variables,
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

impl AcpAgent {
    fn new(name: &str, spec: AgentSpec) -> AcpAgent {
        let mut command = spec.command.into_iter();
        let program = command.next().unwrap_or_default();
        let names: Vec<&'static str> = spec.env.into_iter().map(leak).collect();
        let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
        AcpAgent {
            name: leak(format!("acp:{name}")),
            binary: Binary {
                var: leak(format!("ACP_{}_BIN", name.to_ascii_uppercase().replace('-', "_"))),
                default: leak(program),
            },
            args: command.collect(),
            // What the operator passes through is typically the agent's key: redacted like every credential.
            variables: Variables {
                names,
                prefixes: &[],
                withheld: &[],
                secrets: names,
            },
        }
    }
}

impl Provider for AcpAgent {
    fn name(&self) -> &'static str {
        self.name
    }

    fn binary(&self) -> Binary {
        self.binary
    }

    fn variables(&self) -> Variables {
        self.variables
    }

    fn acp(&self) -> AcpSupport {
        AcpSupport::Only
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        if request.credential.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(ApiError::invalid(
                input::CREDENTIAL_FIELD,
                format!(
                    "{} takes its credentials from the worker's environment (ACP_AGENTS), not from the request",
                    self.name
                ),
            ));
        }
        let mcp_servers = request.take_mcp_servers()?;
        let NoOptions {} = input::options(request.options)?;
        Ok(Box::new(AcpAgentRun {
            args: self.args.clone(),
            variables: self.variables,
            mcp_servers,
        }))
    }
}

/// An operator's agent is configured by the operator; a request can add MCP servers and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

#[derive(Debug)]
struct AcpAgentRun {
    args: Vec<String>,
    variables: Variables,
    mcp_servers: McpServers,
}

#[async_trait]
impl ProviderRun for AcpAgentRun {
    fn secrets(&self) -> Vec<&str> {
        self.mcp_servers.secrets()
    }

    async fn prepare(&self, _ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        Err(Failure::new(ErrorCode::Internal, "an ACP agent runs over ACP only"))
    }

    async fn prepare_acp(&self, ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        Ok(AcpPrepared {
            plan: ctx.plan(self.args.clone(), child_env(&self.variables)),
            mcp_servers: self.mcp_servers.to_acp(),
            cleanup: Cleanup::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_read_with_their_command_and_variables() {
        let agents = parse(r#"{"scripted":{"command":["python3","/opt/agent.py"],"env":["AGENT_KEY"]}}"#).unwrap();
        assert_eq!(
            agents,
            vec![(
                "scripted".to_string(),
                AgentSpec {
                    command: vec!["python3".into(), "/opt/agent.py".into()],
                    env: vec!["AGENT_KEY".into()],
                }
            )]
        );
        let agent = AcpAgent::new("my-agent", agents[0].1.clone());
        assert_eq!(agent.name(), "acp:my-agent");
        assert_eq!(agent.binary().default, "python3");
        assert_eq!(agent.args, ["/opt/agent.py"]);
        assert_eq!(agent.variables().secrets, ["AGENT_KEY"]);
    }

    #[test]
    fn a_bad_configuration_is_refused_with_the_reason() {
        for (raw, says) in [
            ("[]", "JSON object"),
            (r#"{"Bad Name":{"command":["x"]}}"#, "agent name"),
            (r#"{"a":{"command":[]}}"#, "must name a program"),
            (r#"{"a":{"command":["x"],"env":["A=B"]}}"#, "not a variable name"),
            (r#"{"a":{"command":["x"],"cwd":"/"}}"#, "unknown field"),
        ] {
            let err = parse(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
        }
    }
}
