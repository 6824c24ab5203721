//! Builds the HTTP server on a bound listener (port 0 in tests) and runs it until the worker decides to exit.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};

use crate::{http::deadline, routes, settings::Settings, worker::Worker};

pub struct Application {
    port: u16,
    server: Server,
    worker: Arc<Worker>,
}

impl Application {
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", settings.host, settings.port))?;
        Self::with_listener(settings, listener)
    }

    /// Must be called inside the tokio runtime that will run the jobs.
    pub fn with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let settings = Arc::new(settings);
        if settings.broker.is_some()
            && let Err(e) = crate::broker::seal_worker_process()
        {
            tracing::warn!(error = %e, "could not keep the CLIs out of the worker's memory (PR_SET_DUMPABLE)");
        }
        let worker = Worker::new(settings.clone(), tokio::runtime::Handle::current());
        let data = web::Data::new(worker.clone());
        let body_timeout = settings.body_timeout;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap_fn(move |req, srv| deadline::guard(req, srv, body_timeout))
                .configure(routes::configure)
        });
        // Signals are the worker's to handle: SIGTERM must cancel the job and drain, not just stop accepting.
        let server = crate::http::front_door!(server, settings)
            .listen(listener)?
            .shutdown_timeout(settings.shutdown_bound().as_secs().max(1))
            .run();
        Ok(Application { port, server, worker })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { port, server, worker } = self;
        // Installed before anyone can learn the port: a SIGTERM right after start must drain, not kill.
        let signals = Signals::install()?;
        tracing::info!(port, worker_id = %worker.settings.worker_id, "listening");
        let handle = server.handle();
        let serving = tokio::spawn(server);
        let probe = worker.availability.clone();
        tokio::spawn(async move { probe.probe().await });
        tokio::spawn(signals.watch(worker.clone()));

        worker.exited().await;
        // Graceful: streams still sending their last events finish before the process ends.
        handle.stop(true).await;
        serving.await??;
        tracing::info!("stopped");
        Ok(())
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn watch(mut self, worker: Arc<Worker>) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
        worker.begin_shutdown();
        // The drain is bounded by design; this is the backstop if something in it hangs anyway.
        let bound = worker.settings.shutdown_bound() + std::time::Duration::from_secs(2);
        tokio::select! {
            _ = worker.exited() => {}
            _ = tokio::time::sleep(bound) => {
                tracing::error!(seconds = bound.as_secs_f64(), "drain exceeded its bound; exiting now");
                std::process::exit(0);
            }
        }
    }
}
