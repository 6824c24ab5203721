//! `GET /jobs`: the jobs the fleet remembers, newest first, from any gateway (with a Redis store, every gateway
//! lists the same jobs).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::{
    auth,
    error::ApiError,
    event::timestamp,
    gateway::{
        state::Gateway,
        store::{JobPhase, JobRecord, ListFilter},
    },
};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `queued`, `running` or `finished`.
    state: Option<JobPhase>,
    /// Only this provider's jobs.
    provider: Option<String>,
    /// At most this many (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Only jobs created before this instant (RFC 3339): the `createdAt` of the last job of the previous page.
    before: Option<String>,
}

/// One remembered job.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedJob {
    job_id: String,
    state: JobPhase,
    provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<String>,
    /// `completed`, or the terminal error's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    terminal_code: Option<String>,
    /// From admission to the worker taking it.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_wait_ms: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    jobs: Vec<ListedJob>,
}

fn at(ms: u64) -> String {
    timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

impl From<JobRecord> for ListedJob {
    fn from(r: JobRecord) -> Self {
        ListedJob {
            job_id: r.job_id,
            state: r.state,
            provider: r.provider,
            worker: r.worker,
            created_at: at(r.created_at),
            started_at: r.started_at.map(at),
            ended_at: r.ended_at.map(at),
            terminal_code: r.terminal_code,
            queue_wait_ms: r.queue_wait_ms,
        }
    }
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "The remembered jobs, newest first", body = JobList),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it", body = crate::error::ErrorBody),
        (status = 503, description = "The fleet's store cannot be reached (`store_unavailable`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let query = query.into_inner();
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(n @ 1..=MAX_LIMIT) => n,
        Some(_) => {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => {
            let instant = humantime::parse_rfc3339_weak(raw)
                .map_err(|_| ApiError::invalid("before", "before must be an RFC 3339 time, as createdAt"))?;
            Some(
                instant
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            )
        }
    };
    let filter = ListFilter {
        state: query.state,
        provider: query.provider,
        before,
        limit,
    };
    let records = gw.store.list(&filter).await.map_err(|e| {
        tracing::warn!(error = %e, "store unavailable for the job list");
        ApiError::StoreUnavailable {
            retry_after_seconds: gw.settings.common.retry_after_seconds,
        }
    })?;
    Ok(HttpResponse::Ok().json(JobList {
        jobs: records.into_iter().map(ListedJob::from).collect(),
    }))
}
