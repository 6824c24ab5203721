//! Keeps this gateway's picture of the fleet's line current (docs/fleet.md): read from the store often while
//! any job waits, at once after this gateway changed it, and now and then otherwise, so that `queued` positions are
//! fleet-wide and a gateway dispatches its waiting jobs when their turn comes.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::state::Gateway;

/// While jobs wait, other gateways' changes are seen within this long.
const WHILE_WAITING: Duration = Duration::from_millis(50);
/// With an empty line, a job queued by another gateway shows in `/fleet` within this long.
const WHILE_EMPTY: Duration = Duration::from_secs(1);

pub async fn watch(gw: Arc<Gateway>, stop: CancellationToken) {
    loop {
        let (version, waiting) = gw.fleet.line_version();
        match gw.store.line().await {
            Ok(line) => {
                // Waiting here, yet gone from the store's line (a store restarted without its last writes): put
                // back, at the end.
                let kept = gw.settings.queue_timeout + super::driver::REQUEST_KEPT_AFTER_TIMEOUT;
                for (job_id, request) in gw.fleet.set_line(line, version) {
                    tracing::warn!(%job_id, "the store's line lost a waiting job; putting it back");
                    if let Err(e) = gw.store.enqueue(&job_id, &request, usize::MAX, kept).await {
                        tracing::debug!(%job_id, error = %e, "could not put a job back in the line");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the fleet's line"),
        }
        let pause = if waiting { WHILE_WAITING } else { WHILE_EMPTY };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = gw.fleet.line_changed() => {}
            _ = stop.cancelled() => return,
        }
    }
}
