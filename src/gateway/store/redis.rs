//! The store in Redis (≥ 7, or Valkey), one for every gateway of the fleet. A job's record is one JSON string
//! (`SET NX` makes its id unique fleet-wide), its events one stream whose entry ids are the events' ids
//! (`<id>-1`), and `uw:jobs` a sorted set by creation time for the job list. Finished jobs expire after
//! `GATEWAY_JOB_MEMORY_SECONDS`; a job that never finishes (its gateway and worker both lost) after a day. The
//! fleet's line is one list (`uw:line`); a waiting job's request (credentials included, which is why the store
//! needs a password and is never published) is kept until the job starts.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use redis::{
    AsyncConnectionConfig, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    streams::StreamReadReply,
};

use super::{
    JobPhase, JobRecord, ListFilter, Read, Store, StoreError, StoredEvent, Waiting, after_id, now_ms,
    seal::{self, RequestSeal},
};
use crate::secret::Secret;

/// A job that never reaches its end is still forgotten eventually.
const UNFINISHED_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a command may take before the store counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Events per read; a reader far behind catches up in several.
const READ_COUNT: usize = 1000;
/// Idle connections kept for blocking reads; more followers at once open more, which close when done.
const IDLE_READERS: usize = 16;
const JOB_INDEX: &str = "uw:jobs";

/// Appends a batch in order, skipping ids the stream already has (a batch retried after a lost answer), trims the
/// events before the first one to keep, and sets the stream's expiry. ARGV: the first id to keep, the expiry in
/// seconds, then id and frame of each event.
const APPEND: &str = r#"
local top = -1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then top = tonumber(string.match(last[1][1], '^(%d+)')) end
for i = 3, #ARGV - 1, 2 do
  local id = tonumber(ARGV[i])
  if id > top then
    redis.call('XADD', KEYS[1], ARGV[i] .. '-1', 'f', ARGV[i + 1])
    top = id
  end
end
if tonumber(ARGV[1]) > 0 then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0') end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return top
"#;

/// The ids and sizes of a job's events this gateway appended, oldest first, and their sum.
type Appended = (VecDeque<(u64, usize)>, usize);

/// Takes the lease when it is free, renews it when the caller holds it. ARGV: owner, time to live in ms.
const LEASE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Deletes the lease only when the caller holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// The fleet's line (a list of job ids, head first), when each job in it was queued, and which are being handed
/// to a worker (id → the gateway's owner name).
const LINE: &str = "uw:line";
const LINE_SINCE: &str = "uw:line:since";
const LINE_CLAIMED: &str = "uw:line:claimed";

/// The line as id, since, claimer ('' for none), … for each job. A job whose request is gone (it expired: nobody
/// waits for it any more) leaves the line here. KEYS: line, since, claimed. The last two ARGV: the prefix and
/// suffix of a job's request key (a single-instance store; the keys read are not all declared).
const READ_LINE: &str = r#"
local prefix, suffix = ARGV[#ARGV - 1], ARGV[#ARGV]
local out = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', prefix .. id .. suffix) == 1 then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or '0'
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  else
    redis.call('LREM', KEYS[1], 0, id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return out
"#;

/// Queues a job unless the line is full (`false` then), and goes on as READ_LINE to answer the line; a job already
/// in the line keeps its place. KEYS: line, since, claimed, the job's request. ARGV: id, max, now, request, ttl in
/// ms, then READ_LINE's.
const ENQUEUE: &str = r#"
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return false end
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
"#;

/// Marks a waiting job as being handed to a worker by ARGV[2], if it is in the line with its request, unclaimed,
/// and its lease is the caller's or nobody's. KEYS: line, claimed, the job's request, its lease. ARGV: id, owner.
const CLAIM: &str = r#"
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[2] then return 0 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
"#;

const REQUEST_PREFIX: &str = "uw:job:";
const REQUEST_SUFFIX: &str = ":request";

/// The jobs not finished yet (queued or running), for a gateway looking for jobs whose gateway died.
const LIVE: &str = "uw:live";

pub struct RedisStore {
    client: Client,
    commands: ConnectionManager,
    /// Connections for blocking reads, which would hold up every other command on a common one.
    readers: Mutex<Vec<MultiplexedConnection>>,
    append: Script,
    lease: Script,
    release: Script,
    enqueue: Script,
    read_line: Script,
    claim: Script,
    /// Seals the waiting requests (their credentials) while they lie in Redis; None: kept as sent.
    seal: Option<Arc<RequestSeal>>,
    memory: Duration,
    log_max_bytes: usize,
    /// What this gateway appended per job (id and size), to trim a stream past `GATEWAY_LOG_MAX_BYTES`: the
    /// relaying gateway is the only writer of a job's stream.
    sizes: Mutex<HashMap<String, Appended>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

fn store_error(e: redis::RedisError) -> StoreError {
    // RedisError's text names the command and the server's answer, never the password of the URL.
    StoreError(e.to_string())
}

fn record_key(job_id: &str) -> String {
    format!("uw:job:{job_id}")
}

fn events_key(job_id: &str) -> String {
    format!("uw:job:{job_id}:events")
}

fn lease_key(job_id: &str) -> String {
    format!("uw:job:{job_id}:lease")
}

fn cancel_key(job_id: &str) -> String {
    format!("uw:job:{job_id}:cancel")
}

fn request_key(job_id: &str) -> String {
    format!("{REQUEST_PREFIX}{job_id}{REQUEST_SUFFIX}")
}

/// Out of the line, and its request gone, in one round trip with whatever else `pipe` holds.
fn leave_line(pipe: &mut redis::Pipeline, job_id: &str) {
    pipe.cmd("LREM")
        .arg(LINE)
        .arg(0)
        .arg(job_id)
        .ignore()
        .cmd("HDEL")
        .arg(LINE_SINCE)
        .arg(job_id)
        .ignore()
        .cmd("HDEL")
        .arg(LINE_CLAIMED)
        .arg(job_id)
        .ignore()
        .cmd("DEL")
        .arg(request_key(job_id))
        .ignore();
}

impl RedisStore {
    pub fn new(
        url: &str,
        password: Option<&Secret>,
        seal: Option<Arc<RequestSeal>>,
        memory: Duration,
        log_max_bytes: usize,
    ) -> Result<Self, StoreError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(url).map_err(store_error)?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(store_error)?;
        Ok(RedisStore {
            client,
            commands,
            readers: Mutex::new(Vec::new()),
            append: Script::new(APPEND),
            lease: Script::new(LEASE),
            release: Script::new(RELEASE),
            enqueue: Script::new(&format!("{ENQUEUE}{READ_LINE}")),
            read_line: Script::new(READ_LINE),
            claim: Script::new(CLAIM),
            seal,
            memory,
            log_max_bytes,
            sizes: Mutex::new(HashMap::new()),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.commands.clone()
    }

    async fn reader(&self) -> Result<MultiplexedConnection, StoreError> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let config = AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(store_error)
            }
        }
    }

    /// The id before which the stream may be trimmed so that what this gateway appended stays within the bound;
    /// 0 when nothing is to be trimmed.
    fn trim_before(&self, job_id: &str, events: &[StoredEvent]) -> u64 {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        let (held, bytes) = sizes.entry(job_id.to_string()).or_default();
        for e in events {
            if held.back().is_none_or(|(last, _)| *last < e.id) {
                held.push_back((e.id, e.frame.len()));
                *bytes += e.frame.len();
            }
        }
        if *bytes <= self.log_max_bytes {
            // Nothing to trim: and what another gateway wrote before (a relay taken over) is not counted here, so
            // the first id this gateway appended is no bound.
            return 0;
        }
        while *bytes > self.log_max_bytes && held.len() > 1 {
            if let Some((_, size)) = held.pop_front() {
                *bytes -= size;
            }
        }
        held.front().map_or(0, |(id, _)| *id)
    }
}

/// The line from the scripts' flat answer.
fn waiting(flat: &[String]) -> Vec<Waiting> {
    flat.chunks_exact(3)
        .map(|job| Waiting {
            job_id: job[0].clone(),
            since: job[1].parse().unwrap_or(0),
            claimed: !job[2].is_empty(),
        })
        .collect()
}

fn parse_record(json: Option<String>) -> Option<JobRecord> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create(&self, record: &JobRecord) -> Result<Result<(), JobRecord>, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError(e.to_string()))?;
        let key = record_key(&record.job_id);
        let mut conn = self.conn();
        // `SET … NX GET` answers the value that was there, and sets nothing then: none means this call created it.
        let previous: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&json)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(UNFINISHED_TTL.as_secs())
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if let Some(previous) = previous {
            return Ok(Err(parse_record(Some(previous)).unwrap_or_else(|| record.clone())));
        }
        // The id was free: whatever an earlier job of the same id left (events, a cancel) is not this one's.
        redis::pipe()
            .cmd("DEL")
            .arg(events_key(&record.job_id))
            .arg(cancel_key(&record.job_id))
            .ignore()
            .cmd("ZADD")
            .arg(JOB_INDEX)
            .arg(record.created_at)
            .arg(&record.job_id)
            .ignore()
            .cmd("SADD")
            .arg(LIVE)
            .arg(&record.job_id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(Ok(()))
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError(e.to_string()))?;
        let ttl = match record.state {
            JobPhase::Finished => self.memory,
            _ => UNFINISHED_TTL,
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(record_key(&record.job_id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        if record.state != JobPhase::Queued {
            leave_line(&mut pipe, &record.job_id);
        }
        match record.state {
            JobPhase::Queued | JobPhase::Running => {}
            JobPhase::Finished => {
                pipe.cmd("PEXPIRE")
                    .arg(events_key(&record.job_id))
                    .arg(self.memory.as_millis().max(1) as u64)
                    .ignore()
                    .cmd("SREM")
                    .arg(LIVE)
                    .arg(&record.job_id)
                    .ignore();
                self.sizes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&record.job_id);
            }
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(store_error)
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(record_key(job_id))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(parse_record(json))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError> {
        let mut conn = self.conn();
        let max = match filter.before {
            Some(before) => format!("({before}"),
            None => "+inf".to_string(),
        };
        let mut out = Vec::new();
        // Jobs created meanwhile shift the pages; an id already taken is not listed twice.
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0usize;
        // Pages of ids, newest first, until the filter has its fill or the index ends.
        while out.len() < filter.limit {
            let page = (filter.limit * 2).clamp(50, 500);
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(JOB_INDEX)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(offset)
                .arg(page)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            if ids.is_empty() {
                break;
            }
            offset += ids.len();
            let keys: Vec<String> = ids.iter().map(|id| record_key(id)).collect();
            let records: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            let mut expired = Vec::new();
            for (id, json) in ids.iter().zip(records) {
                match parse_record(json) {
                    Some(record) if filter.admits(&record) && out.len() < filter.limit => {
                        if seen.insert(record.job_id.clone()) {
                            out.push(record);
                        }
                    }
                    Some(_) => {}
                    None => expired.push(id.clone()),
                }
            }
            if !expired.is_empty() {
                // The record expired; its index entry goes now.
                redis::cmd("ZREM")
                    .arg(JOB_INDEX)
                    .arg(&expired)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(store_error)?;
                offset -= expired.len();
            }
        }
        Ok(out)
    }

    async fn forget(&self, job_id: &str) -> Result<(), StoreError> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner()).remove(job_id);
        let mut pipe = redis::pipe();
        leave_line(&mut pipe, job_id);
        pipe.cmd("DEL")
            .arg(record_key(job_id))
            .arg(events_key(job_id))
            .arg(cancel_key(job_id))
            .ignore()
            .cmd("ZREM")
            .arg(JOB_INDEX)
            .arg(job_id)
            .ignore()
            .cmd("SREM")
            .arg(LIVE)
            .arg(job_id)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(store_error)
    }

    async fn append(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let keep_from = self.trim_before(job_id, events);
        let mut call = self.append.key(events_key(job_id));
        call.arg(keep_from).arg(UNFINISHED_TTL.as_secs());
        for e in events {
            call.arg(e.id).arg(e.frame.as_ref());
        }
        call.invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn read(&self, job_id: &str, after: Option<u64>, wait: Duration) -> Result<Read, StoreError> {
        let from = match after {
            Some(a) => format!("{a}-1"),
            None => "0-0".to_string(),
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(READ_COUNT);
        let block = !wait.is_zero();
        if block {
            cmd.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(events_key(job_id)).arg(from);
        let reply: Option<StreamReadReply> = if block {
            let mut conn = self.reader().await?;
            conn.set_response_timeout(wait + RESPONSE_TIMEOUT);
            let reply = cmd.query_async(&mut conn).await.map_err(store_error)?;
            let mut idle = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            reply
        } else {
            cmd.query_async(&mut self.conn()).await.map_err(store_error)?
        };
        let events = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|entry| {
                let id = entry.id.split('-').next()?.parse().ok()?;
                let frame = match entry.map.get("f")? {
                    redis::Value::BulkString(bytes) => Bytes::copy_from_slice(bytes),
                    _ => return None,
                };
                Some(StoredEvent { id, frame })
            });
        Ok(after_id(events, after))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn lease(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut call = self.lease.key(lease_key(job_id));
        call.arg(owner).arg(ttl.as_millis().max(1) as u64);
        call.invoke_async::<i64>(&mut self.conn())
            .await
            .map(|taken| taken == 1)
            .map_err(store_error)
    }

    async fn release(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let mut call = self.release.key(lease_key(job_id));
        call.arg(owner);
        call.invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn orphans(&self) -> Result<Vec<JobRecord>, StoreError> {
        let mut conn = self.conn();
        let running: Vec<String> = redis::cmd("SMEMBERS")
            .arg(LIVE)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let leases: Vec<String> = running.iter().map(|id| lease_key(id)).collect();
        let holders: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&leases)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        let unheld: Vec<&String> = running
            .iter()
            .zip(holders)
            .filter_map(|(id, holder)| holder.is_none().then_some(id))
            .collect();
        if unheld.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = unheld.iter().map(|id| record_key(id)).collect();
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        let mut orphans = Vec::new();
        for (id, json) in unheld.into_iter().zip(records) {
            match parse_record(json) {
                Some(record) if record.state != JobPhase::Finished => orphans.push(record),
                // Expired, or finished meanwhile: nothing to take over, and no reason to look again.
                _ => {
                    redis::cmd("SREM")
                        .arg(LIVE)
                        .arg(id)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(store_error)?;
                }
            }
        }
        Ok(orphans)
    }

    async fn enqueue(
        &self,
        job_id: &str,
        request: &Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Option<Vec<Waiting>>, StoreError> {
        let request = match &self.seal {
            Some(seal) => seal.seal(job_id, request)?,
            None => request.clone(),
        };
        let mut call = self.enqueue.key(LINE);
        call.key(LINE_SINCE).key(LINE_CLAIMED).key(request_key(job_id));
        // Lua numbers are doubles: an unbounded line is any bound above what a list can hold.
        call.arg(job_id)
            .arg(max.min(1 << 50) as u64)
            .arg(now_ms())
            .arg(request.as_ref())
            .arg(ttl.as_millis().max(1) as u64)
            .arg(REQUEST_PREFIX)
            .arg(REQUEST_SUFFIX);
        let flat: Option<Vec<String>> = call.invoke_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(flat.map(|flat| waiting(&flat)))
    }

    async fn line(&self) -> Result<Vec<Waiting>, StoreError> {
        let mut call = self.read_line.key(LINE);
        call.key(LINE_SINCE)
            .key(LINE_CLAIMED)
            .arg(REQUEST_PREFIX)
            .arg(REQUEST_SUFFIX);
        let flat: Vec<String> = call.invoke_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(waiting(&flat))
    }

    async fn claim(&self, job_id: &str, owner: &str) -> Result<bool, StoreError> {
        let mut call = self.claim.key(LINE);
        call.key(LINE_CLAIMED)
            .key(request_key(job_id))
            .key(lease_key(job_id))
            .arg(job_id)
            .arg(owner);
        call.invoke_async::<i64>(&mut self.conn())
            .await
            .map(|n| n == 1)
            .map_err(store_error)
    }

    async fn unclaim(&self, job_id: &str) -> Result<(), StoreError> {
        redis::cmd("HDEL")
            .arg(LINE_CLAIMED)
            .arg(job_id)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(store_error)
    }

    async fn leave(&self, job_id: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        leave_line(&mut pipe, job_id);
        pipe.query_async::<()>(&mut self.conn()).await.map_err(store_error)
    }

    async fn request(&self, job_id: &str) -> Result<Option<Bytes>, StoreError> {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(request_key(job_id))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        match seal::open(self.seal.as_deref(), job_id, Bytes::from(raw)) {
            Ok(request) => Ok(Some(request)),
            // No retry can open it: the job is lost to this gateway as if its request had expired, and the
            // operator learns why.
            Err(e) => {
                tracing::error!(job_id, error = %e, "a waiting request in the store cannot be opened");
                Ok(None)
            }
        }
    }

    async fn request_cancel(&self, job_id: &str) -> Result<(), StoreError> {
        // Read within a second by the holding gateway; gone with the job's memory if nobody ever does.
        redis::cmd("SET")
            .arg(cancel_key(job_id))
            .arg(1)
            .arg("PX")
            .arg(self.memory.as_millis().max(1000) as u64)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(store_error)
    }

    async fn cancel_requested(&self, job_id: &str) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(cancel_key(job_id))
            .query_async::<i64>(&mut self.conn())
            .await
            .map(|n| n > 0)
            .map_err(store_error)
    }

    async fn last_id(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(events_key(job_id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(last
            .ids
            .first()
            .and_then(|e| e.id.split('-').next())
            .and_then(|id| id.parse().ok()))
    }
}
