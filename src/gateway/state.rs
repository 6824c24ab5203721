//! The gateway's state, one value that every route and relay holds: its settings, the fleet it sees, the jobs it
//! took, the store of fleet state, its upstream client, counters and history, and the shutdown signal.

use tokio_util::sync::CancellationToken;

use super::{
    fleet::Fleet, history::History, jobs::Jobs, metrics::GatewayMetrics, relay::Upstream, settings::GatewaySettings,
    store::Store,
};

pub struct Gateway {
    pub settings: GatewaySettings,
    pub fleet: std::sync::Arc<Fleet>,
    pub jobs: Jobs,
    /// The fleet's memory: job records and their events (in memory, or in Redis for every gateway).
    pub store: std::sync::Arc<dyn Store>,
    /// This process's name as the holder of relay leases: unique per start, so a restarted gateway holds none.
    pub owner: String,
    /// The jobs this gateway is taking over right now, so that one look does not start a second takeover of one.
    pub taking_over: std::sync::Mutex<std::collections::HashSet<String>>,
    pub upstream: Upstream,
    pub metrics: GatewayMetrics,
    /// The last hour's jobs per minute, for the dashboard's chart.
    pub history: History,
    /// Relays run on the main runtime, not on the HTTP thread that accepted the request.
    pub runtime: tokio::runtime::Handle,
    /// SIGTERM: waiting requests end with `shutdown`; streams in flight finish while the server drains.
    pub shutdown: CancellationToken,
}
