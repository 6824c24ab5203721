//! unified-worker: runs one coding-assistant job per process and streams it as Server-Sent Events.

pub mod auth;
pub mod client;
pub mod delivery;
pub mod error;
pub mod event;
pub mod event_log;
pub mod gateway {
    pub mod discovery {
        pub mod docker;
    }
}
pub mod git;
pub mod healthcheck;
pub mod job;
pub mod outbound;
pub mod persistence;
pub mod process;
pub mod provider;
pub mod request;
pub mod routes;
pub mod secret;
pub mod session_store;
pub mod settings;
pub mod sse;
pub mod startup;
pub mod telemetry;
pub mod url_policy;
pub mod webhook;
pub mod worker;
