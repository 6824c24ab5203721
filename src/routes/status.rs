//! `GET /status`: the phase and the current job, open without a token and free of secrets; with `?wait=<phase>` a
//! long poll that answers as soon as the phase is another one, so a gateway learns at once that a slot is free.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::{
    error::{ApiError, Phase},
    event::timestamp,
    worker::Worker,
};

/// The longest a long poll waits, and how long it waits without `timeout`: short enough that a gateway notices a
/// worker that vanished without closing its connections within this, long enough to cost next to nothing.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `idle`, `busy` or `draining`.
    #[schema(value_type = String)]
    status: &'static str,
    /// The current or last job.
    job_id: Option<String>,
    #[schema(value_type = Option<String>)]
    provider: Option<&'static str>,
    started_at: Option<String>,
    last_event_id: Option<u64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Long poll: answer as soon as the phase is not this one (`idle`, `busy` or `draining`).
    #[param(value_type = Option<String>)]
    wait: Option<String>,
    /// With `wait`: answer after this many seconds at the latest, with the phase unchanged (0–30, default 30).
    #[param(value_type = Option<f64>)]
    timeout: Option<String>,
}

impl Query {
    /// The phase to wait out and for how long; both are checked even when only one is given.
    fn parse(&self) -> Result<Option<(Phase, Duration)>, ApiError> {
        let timeout = match self.timeout.as_deref() {
            None => MAX_WAIT,
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_WAIT.as_secs_f64())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "timeout",
                        format!("timeout must be a number of seconds from 0 to {}", MAX_WAIT.as_secs()),
                    )
                })?,
        };
        let Some(wait) = self.wait.as_deref() else {
            return Ok(None);
        };
        let phase = [Phase::Idle, Phase::Busy, Phase::Draining]
            .into_iter()
            .find(|p| p.as_str() == wait)
            .ok_or_else(|| ApiError::invalid("wait", "wait must be idle, busy or draining"))?;
        Ok(Some((phase, timeout)))
    }
}

#[utoipa::path(get, path = "/status", tag = "worker", params(Query),
    responses(
        (status = 200, description = "The worker's phase and its current or last job; with `wait`, as soon as the phase differs from it, at the timeout, or when the worker exits", body = Status),
        (status = 422, description = "`wait` or `timeout` is not valid; `field` names it", body = crate::error::ErrorBody),
    ))]
pub async fn status(query: web::Query<Query>, worker: web::Data<Arc<Worker>>) -> Result<HttpResponse, ApiError> {
    if let Some((phase, timeout)) = query.parse()? {
        let mut moved = worker.watch_phase();
        // An exiting worker answers at once: a request still waiting would hold up its graceful stop.
        tokio::select! {
            _ = moved.wait_for(|now| *now != phase) => {}
            _ = tokio::time::sleep(timeout) => {}
            _ = worker.exited() => {}
        }
    }
    let job = worker.job();
    Ok(HttpResponse::Ok().json(Status {
        status: worker.phase().as_str(),
        job_id: job.as_ref().map(|j| j.id.clone()),
        provider: job.as_ref().map(|j| j.provider.as_str()),
        started_at: job.as_ref().map(|j| timestamp(j.started_at)),
        last_event_id: job.as_ref().and_then(|j| j.log.last_seq()),
    }))
}
