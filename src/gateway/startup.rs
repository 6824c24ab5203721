//! Builds the gateway's HTTP server on a bound listener (port 0 in tests), follows discovery, and runs until
//! SIGTERM or SIGINT.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};
use tokio_util::sync::CancellationToken;

use super::{
    discovery, fleet::Fleet, history::History, jobs::Jobs, line, metrics::GatewayMetrics, poller, relay::Upstream,
    routes, settings::GatewaySettings, state::Gateway, store, takeover,
};

pub struct GatewayApp {
    port: u16,
    server: Server,
    gateway: Arc<Gateway>,
}

impl GatewayApp {
    pub fn build(settings: GatewaySettings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let listener = TcpListener::bind((common.host.as_str(), common.port))
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", common.host, common.port))?;
        Self::with_listener(settings, listener)
    }

    /// Must be called inside the tokio runtime that will run the relays.
    pub fn with_listener(settings: GatewaySettings, listener: TcpListener) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let metrics = GatewayMetrics::default();
        let store = store::open(&settings.store, settings.job_memory, settings.log_max_bytes)?;
        if let store::StoreConfig::Redis { seal: None, .. } = &settings.store {
            tracing::warn!(
                "waiting requests, credentials included, are kept in Redis as sent: set GATEWAY_STORE_KEY (the same \
                 on every gateway) to seal them"
            );
        }
        let store = Arc::new(store::Metered::new(
            store,
            metrics.store_errors.clone(),
            metrics.store_seconds.clone(),
        ));
        let gateway = Arc::new(Gateway {
            store,
            owner: uuid::Uuid::new_v4().to_string(),
            taking_over: Default::default(),
            fleet: Fleet::new(),
            jobs: Jobs::new(settings.job_memory),
            upstream: Upstream::new(settings.common.api_token.clone())?,
            metrics,
            history: History::default(),
            runtime: tokio::runtime::Handle::current(),
            shutdown: CancellationToken::new(),
            settings,
        });
        let data = web::Data::new(gateway.clone());
        let common = &gateway.settings.common;
        let body_timeout = common.body_timeout;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap_fn(move |req, srv| crate::http::deadline::guard(req, srv, body_timeout))
                .configure(routes::configure)
        });
        // The same bounds as the worker's: the gateway is the published door, the first to meet a client that
        // trickles its request or opens connections and sends nothing.
        let server = crate::http::front_door!(server, common)
            .listen(listener)?
            // Streams in flight get this long to finish on SIGTERM; their jobs go on on the workers regardless.
            .shutdown_timeout(10)
            .run();
        Ok(GatewayApp { port, server, gateway })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let GatewayApp { port, server, gateway } = self;
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let stop = CancellationToken::new();
        tokio::spawn(keep_fleet(gateway.clone(), stop.clone()));
        // Only a store that other gateways write can hold a relay, or a line, that another gateway changes.
        if gateway.store.kind() != "memory" {
            tokio::spawn(takeover::watch(gateway.clone(), stop.clone()));
            tokio::spawn(line::watch(gateway.clone(), stop.clone()));
        }
        tracing::info!(port, workers = ?gateway.settings.workers, "listening");
        let handle = server.handle();
        let serving = tokio::spawn(server);
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        gateway.shutdown.cancel();
        stop.cancel();
        handle.stop(true).await;
        serving.await??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Follows discovery: new workers get a poller, vanished ones are dropped.
async fn keep_fleet(gw: Arc<Gateway>, stop: CancellationToken) {
    let mut found = discovery::spawn(&gw.settings.workers, stop.clone());
    loop {
        let current = found.borrow_and_update().clone();
        for address in gw.fleet.sync(&current) {
            poller::spawn(gw.fleet.clone(), gw.upstream.client.clone(), address, gw.settings.poll);
        }
        tokio::select! {
            changed = found.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
