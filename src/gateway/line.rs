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
            Ok(line) => gw.fleet.set_line(line, version),
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
