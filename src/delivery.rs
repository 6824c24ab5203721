//! What leaves the worker besides the stream: persistence (started with the job, flushed at the drain) and the
//! completion webhook (sent after the flush, so a receiver that reads the chunks finds them all). docs/architecture.md, docs/persistence.md.

use std::sync::Arc;

use crate::{
    event::EventKind, event_log::EventLog, outbound, persistence::ChunkSink, request::JobRequest, settings::Settings,
    webhook, worker::JobHandle,
};

pub struct Delivery {
    client: Option<reqwest::Client>,
    sink: Option<ChunkSink>,
    callback: Option<reqwest::Url>,
}

impl Delivery {
    /// Call before the job's first event: persistence reads the log from event 0.
    pub fn start(settings: &Settings, request: &JobRequest, log: &Arc<EventLog>) -> Self {
        let mut delivery = Delivery {
            client: None,
            sink: None,
            callback: request.callback.clone(),
        };
        if request.database.is_none() && request.callback.is_none() {
            return delivery;
        }
        let client = match outbound::client(settings.outbound_request_timeout) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client for persistence and webhooks");
                log.append(EventKind::warn(
                    "persistence and the completion webhook are unavailable: the HTTP client could not be built",
                ));
                return delivery;
            }
        };
        delivery.sink = request
            .database
            .clone()
            .map(|destination| ChunkSink::start(client.clone(), destination, log.clone()));
        delivery.client = Some(client);
        delivery
    }

    /// The drain after the terminal event: flush persistence within `FLUSH_TIMEOUT_SECONDS`, then send the webhook
    /// within `WEBHOOK_TIMEOUT_SECONDS`. Failures are logged; the worker exits either way.
    pub async fn finish(self, settings: &Settings, job: &JobHandle) {
        let duration = job.started_at.elapsed().unwrap_or_default();
        if let Some(sink) = self.sink {
            sink.finish(settings.flush_timeout).await;
        }
        let (Some(client), Some(url)) = (self.client, self.callback) else {
            return;
        };
        let Some(terminal) = terminal_json(&job.log).await else {
            tracing::error!(job_id = %job.id, "no terminal event to report to the callback");
            return;
        };
        let body = match webhook::payload(&terminal, duration) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "cannot build the webhook body");
                return;
            }
        };
        // Only the host is logged: callback URLs often carry a token in their path or query.
        let host = url.host_str().unwrap_or_default().to_string();
        let key = settings.webhook_key.as_ref();
        match webhook::deliver(&client, &url, key, &job.id, body, settings.webhook_timeout).await {
            Ok(attempts) => tracing::info!(job_id = %job.id, host, attempts, "completion webhook delivered"),
            Err(e) => tracing::warn!(job_id = %job.id, host, error = %e, "completion webhook not delivered"),
        }
    }
}

/// The terminal event is the log's last one, and the log always keeps its last event in memory.
async fn terminal_json(log: &Arc<EventLog>) -> Option<bytes::Bytes> {
    let seq = log.last_seq()?;
    let frames = log.reader(seq).ok()?.next_frames(1, usize::MAX).await.ok()?;
    frames.into_iter().find(|f| f.terminal).map(|f| f.json())
}
