//! The reference in `docs/` cannot drift from the code: the settings table of docs/configuration.md against every
//! variable the worker, the gateway and the `exec` client read, and the error-code tables of docs/api.md and
//! docs/events.md against the codes the servers answer with.

use std::{cell::RefCell, collections::BTreeSet, path::Path};

use clap::Args;
use unified_worker::{
    client::ExecArgs,
    error::ApiError,
    event::ErrorCode,
    gateway::settings::GatewaySettings,
    provider::{BASE_ENV, ProviderKind},
    settings::Settings,
};

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backticked first cell of every table row under `## {heading}`, up to the next heading.
fn first_cells(text: &str, heading: &str) -> BTreeSet<String> {
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section `## {heading}`"));
    text[start..]
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}

/// Every variable a `from_lookup` asks for, whatever it is answered.
fn asked(read: impl FnOnce(&dyn Fn(&str) -> Option<String>)) -> BTreeSet<String> {
    let names = RefCell::new(BTreeSet::new());
    read(&|name: &str| {
        names.borrow_mut().insert(name.to_string());
        // The one setting without a default; any valid value makes the gateway read all the others.
        (name == "GATEWAY_WORKERS").then(|| "http://127.0.0.1:9".to_string())
    });
    names.into_inner()
}

/// Read outside the settings: by the `exec` client's token lookups, its colour switch, the log filter, the image's
/// entrypoint (each `*_SECRET` names a mounted secret file) and the Docker client library of `docker:` discovery.
fn read_elsewhere() -> BTreeSet<String> {
    let entrypoint = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("entrypoint.sh")).unwrap();
    let secret_files = entrypoint
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.ends_with("_SECRET") && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(String::from);
    [
        "WORKER_API_TOKEN",
        "GITHUB_TOKEN",
        "NO_COLOR",
        "RUST_LOG",
        "DOCKER_HOST",
    ]
    .into_iter()
    .map(String::from)
    .chain(secret_files)
    .collect()
}

#[test]
fn the_settings_table_lists_every_variable_the_code_reads_and_nothing_else() {
    let documented = first_cells(&doc("configuration.md"), "Settings");
    let mut required = asked(|lookup| {
        Settings::from_lookup(lookup).expect("defaults are valid");
    });
    required.extend(asked(|lookup| {
        GatewaySettings::from_lookup(lookup).expect("defaults are valid");
    }));
    let exec = ExecArgs::augment_args(clap::Command::new("exec"));
    required.extend(
        exec.get_arguments()
            .filter_map(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned()),
    );
    required.extend(read_elsewhere());
    let providers: Vec<_> = ProviderKind::all().map(|k| k.provider()).collect();
    for p in &providers {
        required.insert(p.binary().var.to_string());
        required.extend(p.variables().withheld.iter().map(|v| v.to_string()));
    }

    let missing: Vec<_> = required.iter().filter(|name| !documented.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "read by the code, missing from docs/configuration.md: {missing:?}"
    );

    // Beyond those, a row may name a variable that reaches a CLI: by name, as a secret, by one of a provider's
    // prefixes (or the prefix itself, `ANTHROPIC_*`), or one of the basics every CLI gets.
    let passed = |name: &str| {
        BASE_ENV.contains(&name)
            || providers.iter().any(|p| {
                let v = p.variables();
                v.names.contains(&name)
                    || v.secrets.contains(&name)
                    || v.prefixes
                        .iter()
                        .any(|prefix| name.starts_with(prefix) || name == format!("{prefix}*"))
            })
    };
    // `ACP_<NAME>_BIN` stands for the binary variable of each `ACP_AGENTS` entry.
    let pattern = |name: &str| name == "ACP_<NAME>_BIN" && required.contains("ACP_AGENTS");
    let unknown: Vec<_> = documented
        .iter()
        .filter(|name| !required.contains(*name) && !passed(name) && !pattern(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "in docs/configuration.md but read by nothing: {unknown:?}"
    );
}

#[test]
fn the_error_code_table_lists_every_code_an_answer_can_carry() {
    let documented = first_cells(&doc("api.md"), "Error codes");
    let codes: BTreeSet<String> = ApiError::codes().into_iter().map(String::from).collect();
    assert_eq!(documented, codes, "docs/api.md `## Error codes` against ApiError");
}

#[test]
fn the_terminal_code_table_lists_every_terminal_error_code() {
    let documented = first_cells(&doc("events.md"), "Terminal error codes");
    let codes: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
    assert_eq!(
        documented, codes,
        "docs/events.md `## Terminal error codes` against ErrorCode"
    );
}
