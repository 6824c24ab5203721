//! Placeholder until the engine-backed discovery lands: publishes nothing.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub async fn watch(service: String, port: u16, found: watch::Sender<Vec<String>>, stop: CancellationToken) {
    let _ = (service, port, found);
    stop.cancelled().await
}
