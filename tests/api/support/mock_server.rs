//! What the mock model APIs share: an actix server on its own OS thread bound to 127.0.0.1:0, started before the
//! test goes on and stopped when dropped, and a poison-tolerant shared state.
//!
//! The server runs on its own thread with its own actix `System` because actix-web needs a single-threaded local
//! runtime, while tests are plain `#[tokio::test]`s whose runtime must not be borrowed or blocked by it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

/// Whole conversations, written files included, travel in every request: far past actix's 256 KiB default, and a
/// 413 from a mock would look like a provider failure.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A mock's state, shared between its handlers and the test.
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    pub fn new(state: T) -> Self {
        Shared(Arc::new(Mutex::new(state)))
    }

    /// A panicking handler poisons the mutex; every update is a single push or assignment, so the state is still
    /// consistent and later requests and the test's assertions keep working instead of cascading panics.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct MockServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl MockServer {
    /// Starts the server with `routes` and `shared` as app data; returns once the port is bound, so the URL can be
    /// handed to a CLI right away.
    pub fn start<T: Send + 'static>(
        name: &str,
        shared: Shared<T>,
        routes: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    ) -> MockServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    let data = web::Data::new(shared);
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                            .configure(routes.clone())
                    })
                    .workers(1)
                    // The test process owns SIGINT/SIGTERM (tests send them to the worker); the mock must not react.
                    .disable_signals()
                    .shutdown_timeout(0)
                    .bind(("127.0.0.1", 0));
                    let server = match bound {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let Some(addr) = server.addrs().first().copied() else {
                        let _ = tx.send(Err("bound to no address".to_string()));
                        return;
                    };
                    let server = server.run();
                    if tx.send(Ok((addr, server.handle()))).is_err() {
                        return;
                    }
                    let _ = server.await;
                });
            })
            .unwrap_or_else(|e| panic!("spawn {name} thread: {e}"));
        match rx.recv() {
            Ok(Ok((addr, handle))) => MockServer { addr, handle },
            Ok(Err(e)) => panic!("{name}: cannot bind 127.0.0.1:0: {e}"),
            Err(_) => panic!("{name}: server thread died before binding"),
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // `stop` sends the command eagerly; the returned future only waits for completion. Not waiting keeps Drop
        // non-blocking inside async tests; the thread ends on its own once the server has stopped.
        drop(self.handle.stop(false));
    }
}
