//! Whether each provider's CLI can run here, and its version, for `GET /health`. Probed once in the background
//! so that start-up and health checks never wait for a CLI to boot.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Serialize;

use crate::{
    provider::{ProviderKind, Variables, child_env},
    settings::Settings,
};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderStatus {
    pub available: bool,
    /// Its CLI reaches its model API through the job's broker and never holds the key
    /// (docs/providers.md#the-model-api-broker).
    pub brokered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone)]
pub struct Availability {
    binaries: Vec<(ProviderKind, PathBuf)>,
    brokered: HashMap<ProviderKind, bool>,
    probed: Arc<RwLock<HashMap<ProviderKind, ProviderStatus>>>,
}

impl Availability {
    pub fn new(settings: &Settings) -> Self {
        Availability {
            binaries: ProviderKind::all()
                .map(|kind| (kind, settings.binary(kind).to_path_buf()))
                .collect(),
            brokered: ProviderKind::all()
                .map(|kind| {
                    let provider = kind.provider();
                    let config = settings.broker.as_ref();
                    let brokered = provider.model_endpoint().is_some_and(|e| e.brokered(config))
                        || (config.is_some() && provider.routes_itself_to_broker());
                    (kind, brokered)
                })
                .collect(),
            probed: Arc::default(),
        }
    }

    /// Runs `<cli> --version` for every provider, once.
    pub async fn probe(&self) {
        for (kind, bin) in &self.binaries {
            // An operator's ACP agent need not know `--version` (its program may be an interpreter).
            let status = match kind.provider().acp() {
                crate::provider::AcpSupport::Only => match crate::process::resolve(bin) {
                    Some(_) => ProviderStatus {
                        brokered: false,
                        available: true,
                        version: None,
                        reason: None,
                    },
                    None => unavailable(bin),
                },
                _ => probe_one(bin).await,
            };
            self.probed
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*kind, status);
        }
    }

    pub fn snapshot(&self) -> Vec<(ProviderKind, ProviderStatus)> {
        let probed = self.probed.read().unwrap_or_else(|e| e.into_inner());
        self.binaries
            .iter()
            .map(|(kind, bin)| {
                let status = probed
                    .get(kind)
                    .cloned()
                    .unwrap_or_else(|| match crate::process::resolve(bin) {
                        Some(_) => ProviderStatus {
                            brokered: false,
                            available: true,
                            version: None,
                            reason: None,
                        },
                        None => unavailable(bin),
                    });
                let brokered = self.brokered.get(kind).copied().unwrap_or(false);
                (*kind, ProviderStatus { brokered, ..status })
            })
            .collect()
    }
}

fn unavailable(bin: &Path) -> ProviderStatus {
    ProviderStatus {
        brokered: false,
        available: false,
        version: None,
        reason: Some(format!("{} not found", bin.display())),
    }
}

async fn probe_one(bin: &Path) -> ProviderStatus {
    let Some(path) = crate::process::resolve(bin) else {
        return unavailable(bin);
    };
    let mut command = tokio::process::Command::new(&path);
    // The basics only: `--version` needs no credentials.
    command
        .arg("--version")
        .env_clear()
        .envs(child_env(&Variables::default()));
    // Generous: a CLI that is slow to start is still there. Node-based ones (Gemini CLI parses ~100 MB of
    // JavaScript, twice, to print its version) need a few seconds of CPU, which on a busy two-core machine is
    // tens of seconds of wall time; the probe runs in the background, so nothing waits for it but `/health`.
    let result = crate::process::run_bounded(command, Duration::from_secs(60)).await;
    match result {
        Ok(Some(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let version = text.lines().next().unwrap_or_default().trim().to_string();
            ProviderStatus {
                brokered: false,
                available: true,
                version: Some(version).filter(|v| !v.is_empty()),
                reason: None,
            }
        }
        Ok(Some(out)) => ProviderStatus {
            brokered: false,
            available: false,
            version: None,
            reason: Some(format!("{} --version failed with {}", bin.display(), out.status)),
        },
        Err(e) => ProviderStatus {
            brokered: false,
            available: false,
            version: None,
            reason: Some(format!("{}: {e}", bin.display())),
        },
        Ok(None) => ProviderStatus {
            brokered: false,
            available: false,
            version: None,
            reason: Some("--version timed out".into()),
        },
    }
}
