//! The provider layer: the registry of coding-assistant CLIs and `ProviderKind`, the name a request picks one
//! by. What a provider is lives in `contract`; what providers share in `env` (the child's environment), `input`
//! (reading a request's credential and options), `mcp` (a job's MCP servers and their config files) and
//! `private_files` (credential files and their cleanup).
//!
//! A provider is a folder `src/provider/<module>/` (or `<module>.rs` plus that folder) with a unit struct that
//! implements `Provider`, and one line in `registry!` below. Nothing outside this folder names a provider.

pub mod acp_agents;
mod contract;
mod env;
mod input;
mod mcp;
#[cfg(test)]
pub(crate) mod parser_testing;
mod private_files;

use std::{fmt, hash, str::FromStr};

pub use contract::{
    AcpPrepared, AcpSupport, Binary, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, SessionFiles,
};
pub use env::{BASE_ENV, Variables, child_env};
pub use mcp::McpPolicy;
pub use private_files::Cleanup;

/// Declares each provider's module and lists its descriptor, in the order `/health` shows them.
macro_rules! registry {
    ($($module:ident :: $provider:ident),+ $(,)?) => {
        $(pub mod $module;)+

        static PROVIDERS: &[&dyn Provider] = &[$(&$module::$provider),+];
    };
}

registry! {
    claude_code::ClaudeCode,
    cursor::Cursor,
    copilot::Copilot,
    codex::Codex,
    gemini::Gemini,
    opencode::Opencode,
}

/// A provider the registry knows, picked by name. Holding one means it exists: it is parsed once, at the request's
/// edge, and never looked up again.
#[derive(Clone, Copy)]
pub struct ProviderKind(&'static dyn Provider);

impl ProviderKind {
    /// The built-in providers, then the operator's `ACP_AGENTS`.
    pub fn all() -> impl Iterator<Item = ProviderKind> {
        PROVIDERS
            .iter()
            .chain(acp_agents::registered())
            .map(|p| ProviderKind(*p))
    }

    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    pub fn provider(self) -> &'static dyn Provider {
        self.0
    }
}

impl FromStr for ProviderKind {
    /// The names that would have been accepted, for the error message.
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ProviderKind::all().find(|kind| kind.as_str() == name).ok_or_else(|| {
            ProviderKind::all()
                .map(ProviderKind::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

impl PartialEq for ProviderKind {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ProviderKind {}

impl hash::Hash for ProviderKind {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_binary_variables_and_defaults_are_unique() {
        let kinds: Vec<ProviderKind> = ProviderKind::all().collect();
        let names: HashSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let vars: HashSet<&str> = kinds.iter().map(|k| k.provider().binary().var).collect();
        assert_eq!((names.len(), vars.len()), (kinds.len(), kinds.len()));
        for kind in kinds {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
            assert!(kind.provider().binary().var.ends_with("_BIN"), "{kind}");
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let known = "gpt-engineer".parse::<ProviderKind>().unwrap_err();
        assert!(known.contains("claude-code") && known.contains("copilot"), "{known}");
    }
}
