//! The CLI's environment: built from an allow-list (the basics every program needs plus the provider's own
//! variables), never inherited wholesale, so the worker's other secrets stay out of the child (docs/providers.md, docs/git.md).

/// A provider's view of the worker's environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Variables {
    /// Passed to the CLI by exact name.
    pub names: &'static [&'static str],
    /// Every variable with one of these prefixes is passed: the CLI's own namespace.
    pub prefixes: &'static [&'static str],
    /// Matched by a prefix but never passed: they configure the worker (e.g. where its credentials come from).
    pub withheld: &'static [&'static str],
    /// Credentials among them: redacted from everything the worker emits, as are the token strings inside a
    /// value that is a JSON object.
    pub secrets: &'static [&'static str],
}

/// Variables every CLI may see. Everything else in the worker's environment (tokens of other services, the
/// worker's own secrets) stays out of the child.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// The worker's own secrets, never passed on even when a provider's prefix would match them.
const NEVER_PASSED: &[&str] = &["WORKER_API_TOKEN", "WEBHOOK_SECRET"];

/// The child environment for a CLI with these variables, taken from the worker's environment.
pub fn child_env(variables: &Variables) -> Vec<(String, String)> {
    filter(std::env::vars(), variables)
}

fn filter(vars: impl Iterator<Item = (String, String)>, variables: &Variables) -> Vec<(String, String)> {
    vars.filter(|(k, _)| !NEVER_PASSED.contains(&k.as_str()) && !variables.withheld.contains(&k.as_str()))
        .filter(|(k, _)| {
            BASE_ENV.contains(&k.as_str())
                || variables.names.contains(&k.as_str())
                || variables.prefixes.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.into()));
}

/// A variable's value, if set and not empty.
pub fn get_env<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A variable of the worker's environment that configures a provider without reaching its CLI (a withheld
/// one), trimmed like every setting; empty counts as unset.
pub fn worker_var(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_basics_and_the_providers_own_variables_pass() {
        let worker = [
            ("PATH", "/bin"),
            ("TOOL_TOKEN", "x"),
            ("WORKER_API_TOKEN", "y"),
            ("ACME_KEY", "k"),
            ("ACME_SECRET_SOURCE", "/run/secrets/acme"),
            ("ACME_WEBHOOK_SECRET", "s"),
            ("OTHER", "o"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let variables = Variables {
            names: &["OTHER"],
            prefixes: &["ACME_"],
            withheld: &["ACME_SECRET_SOURCE"],
            secrets: &["ACME_KEY"],
        };

        let mut passed: Vec<String> = filter(worker.into_iter(), &variables)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        passed.sort();

        assert_eq!(passed, ["ACME_KEY", "ACME_WEBHOOK_SECRET", "OTHER", "PATH"]);
    }
}
