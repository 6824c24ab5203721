//! `unified-worker acp`: an Agent Client Protocol agent on stdio (the editor's side of the protocol) whose
//! sessions are conversation jobs on a worker or a gateway, reached over the HTTP API (docs/acp-server.md). The
//! protocol's types and connection come from the official `agent-client-protocol` crate.

mod remote;
mod session;
mod updates;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use agent_client_protocol::{
    Agent, Error, Stdio,
    schema::ProtocolVersion,
    v1::schema::{
        AgentCapabilities, CancelNotification, CloseSessionRequest, CloseSessionResponse, Implementation,
        InitializeRequest, InitializeResponse, LoadSessionRequest, LoadSessionResponse, McpCapabilities,
        NewSessionRequest, NewSessionResponse, PromptCapabilities, PromptRequest, SessionCapabilities,
        SessionCloseCapabilities, SessionId,
    },
};
use serde_json::{Value, json};

use crate::client::{Credentials, JobTarget};
use remote::Remote;
use session::Session;

/// The options of `acp`; the subcommand's help text is in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct AcpArgs {
    #[command(flatten)]
    pub target: JobTarget,
    /// At the close of a session's job, push its changes to branch PREFIX<job id> (e.g. `agent/`).
    #[arg(long, value_name = "PREFIX", requires = "repo")]
    pub push_prefix: Option<String>,
    /// Also open a pull request for each pushed branch.
    #[arg(long = "pr", requires = "push_prefix")]
    pub pull_request: bool,
    /// Whether the agent asks the editor before it acts (`--approvals false`: it acts without asking).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub approvals: bool,
    /// How long a session's job waits for the next prompt before it closes itself (the session goes on in a
    /// new job that resumes it).
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_seconds: u64,
    /// How long to wait for a free worker, in seconds.
    #[arg(long = "max-wait", value_name = "SECONDS", default_value_t = 600)]
    pub max_wait: u64,
}

/// What every job of the bridge is asked with; the credentials are read once, at start.
pub struct Settings {
    target: JobTarget,
    credentials: Credentials,
    push_prefix: Option<String>,
    pull_request: bool,
    approvals: bool,
    idle_seconds: u64,
}

impl Settings {
    fn from_args(args: &AcpArgs) -> Result<Settings, String> {
        Ok(Settings {
            target: args.target.clone(),
            credentials: args.target.credentials()?,
            push_prefix: args.push_prefix.clone(),
            pull_request: args.pull_request,
            approvals: args.approvals,
            idle_seconds: args.idle_seconds,
        })
    }

    /// The `/execute` body of a session's job (docs/api.md, docs/conversations.md).
    fn request(&self, text: &str, job_id: &str) -> Value {
        let mut body = json!({
            "userRequest": text,
            "jobId": job_id,
            "conversation": {"idleSeconds": self.idle_seconds},
        });
        self.target.fill(&mut body, &self.credentials);
        if let Some(prefix) = &self.push_prefix {
            // `--push-prefix` needs `--repo`, so `github` is there. A branch per job: a resumed job commits the
            // whole tree on the base again, which the last job's branch would refuse (the worker never forces).
            let mut push = json!({"branch": format!("{prefix}{job_id}")});
            if self.pull_request {
                push["pullRequest"] = json!({});
            }
            body["github"]["push"] = push;
        }
        if self.approvals {
            // No timeout of the bridge's own: the worker's default applies, as when the editor's user walks away.
            body["approvals"] = json!({"mode": "client"});
        }
        body
    }
}

struct Bridge {
    settings: Settings,
    remote: Remote,
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
}

impl Bridge {
    fn session(&self, id: &SessionId) -> Result<Arc<Session>, Error> {
        lock(&self.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| agent_client_protocol::v1::schema::Error::session_not_found(id.clone()).into())
    }
}

/// Serves one editor on stdin and stdout until it goes away; the exit code (2: bad usage, 1: the connection
/// failed). Whatever the bridge has to say goes to stderr, which editors show as the agent's log.
pub async fn run(args: AcpArgs) -> i32 {
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("unified-worker acp: {message}");
            return 2;
        }
    };
    let token = std::env::var("WORKER_API_TOKEN").ok().filter(|t| !t.is_empty());
    let bridge = Arc::new(Bridge {
        settings,
        remote: Remote::new(&args.target.url, token, Duration::from_secs(args.max_wait)),
        sessions: Mutex::new(HashMap::new()),
    });
    let served = serve(bridge.clone()).await;
    // The editor is gone: every open job is closed, so its worker is free and its work tree saved at once rather
    // than after the idle window.
    let sessions: Vec<_> = lock(&bridge.sessions).drain().map(|(_, s)| s).collect();
    for session in sessions {
        session.close(&bridge.remote).await;
    }
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("unified-worker acp: {e}");
            1
        }
    }
}

async fn serve(bridge: Arc<Bridge>) -> Result<(), Error> {
    let (b_new, b_load, b_prompt, b_cancel, b_close) = (
        bridge.clone(),
        bridge.clone(),
        bridge.clone(),
        bridge.clone(),
        bridge.clone(),
    );
    Agent
        .v1()
        .name("unified-worker")
        .on_receive_request(
            async move |request: InitializeRequest, responder, _cx| {
                let version = request.protocol_version.min(ProtocolVersion::V1);
                responder.respond(
                    InitializeResponse::new(version)
                        .agent_capabilities(
                            AgentCapabilities::new()
                                .load_session(true)
                                // Text and resource links are every agent's baseline: no images, audio or
                                // embedded resources.
                                .prompt_capabilities(PromptCapabilities::new())
                                // The worker takes stdio and http MCP servers (docs/api.md).
                                .mcp_capabilities(McpCapabilities::new().http(true))
                                .session_capabilities(
                                    SessionCapabilities::new().close(SessionCloseCapabilities::new()),
                                ),
                        )
                        .agent_info(Implementation::new("unified-worker", env!("CARGO_PKG_VERSION"))),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: NewSessionRequest, responder, _cx| {
                let servers = match updates::mcp_servers(&request.mcp_servers) {
                    Ok(servers) => servers,
                    Err(message) => return responder.respond_with_error(Error::invalid_params().data(message)),
                };
                let id = SessionId::new(uuid::Uuid::new_v4().to_string());
                let session = Arc::new(Session::new(id.clone(), request.cwd, servers));
                lock(&b_new.sessions).insert(id.clone(), session);
                responder.respond(NewSessionResponse::new(id))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: LoadSessionRequest, responder, cx| {
                let servers = match updates::mcp_servers(&request.mcp_servers) {
                    Ok(servers) => servers,
                    Err(message) => return responder.respond_with_error(Error::invalid_params().data(message)),
                };
                let bridge = b_load.clone();
                // Reading the old jobs takes round trips: off the dispatch loop, which must go on reading.
                tokio::spawn(async move {
                    let id = request.session_id;
                    let session = Arc::new(Session::new(id.clone(), request.cwd, servers));
                    match session.load(&bridge.remote, &cx).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let missing: Error = agent_client_protocol::v1::schema::Error::session_not_found(id).into();
                            return responder.respond_with_error(missing);
                        }
                        Err(e) => {
                            let failed = Error::internal_error().data(format!("cannot read the session's jobs: {e}"));
                            return responder.respond_with_error(failed);
                        }
                    }
                    lock(&bridge.sessions).insert(id, session);
                    responder.respond(LoadSessionResponse::new())
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: PromptRequest, responder, cx| {
                let session = match b_prompt.session(&request.session_id) {
                    Ok(session) => session,
                    Err(e) => return responder.respond_with_error(e),
                };
                let bridge = b_prompt.clone();
                // A turn lasts minutes, and its permission requests and the editor's cancel must get through
                // meanwhile.
                tokio::spawn(async move {
                    let reply = session
                        .prompt(&bridge.settings, &bridge.remote, &request.prompt, &cx)
                        .await;
                    responder.respond_with_result(reply)
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: CancelNotification, _cx| {
                if let Ok(session) = b_cancel.session(&notification.session_id) {
                    let remote = b_cancel.remote.clone();
                    tokio::spawn(async move { session.cancel(&remote).await });
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: CloseSessionRequest, responder, _cx| {
                let Some(session) = lock(&b_close.sessions).remove(&request.session_id) else {
                    let missing: Error =
                        agent_client_protocol::v1::schema::Error::session_not_found(request.session_id).into();
                    return responder.respond_with_error(missing);
                };
                let remote = b_close.remote.clone();
                tokio::spawn(async move {
                    session.close(&remote).await;
                    responder.respond(CloseSessionResponse::new())
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_to(Stdio::new())
        .await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Acp {
        #[command(flatten)]
        args: AcpArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings, String> {
        use clap::Parser;
        let parsed =
            Acp::try_parse_from(std::iter::once("acp").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        Settings::from_args(&parsed.args)
    }

    #[test]
    fn every_job_is_a_conversation_that_asks_the_editor_unless_told_otherwise() {
        let body = settings(&["--provider", "copilot", "--model", "m1"])
            .unwrap()
            .request("hi", "s1");
        assert_eq!(
            body,
            json!({"userRequest": "hi", "codingAssistantProvider": "copilot", "jobId": "s1",
                   "conversation": {"idleSeconds": 600}, "providerOptions": {"model": "m1"},
                   "approvals": {"mode": "client"}})
        );
        let quiet = settings(&["--approvals", "false", "--idle-seconds", "30"])
            .unwrap()
            .request("hi", "s1");
        assert!(quiet.get("approvals").is_none(), "{quiet}");
        assert_eq!(quiet["conversation"]["idleSeconds"], 30);
    }

    #[test]
    fn each_job_pushes_to_a_branch_of_its_own() {
        let settings = settings(&[
            "--repo",
            "https://github.com/o/r",
            "--branch",
            "main",
            "--push-prefix",
            "agent/",
            "--pr",
        ])
        .unwrap();
        let body = settings.request("hi", "s1.2");
        assert_eq!(body["github"]["repoUrl"], "https://github.com/o/r");
        assert_eq!(body["github"]["branch"], "main");
        assert_eq!(
            body["github"]["push"],
            json!({"branch": "agent/s1.2", "pullRequest": {}})
        );
    }

    #[test]
    fn bad_usage_is_explained() {
        assert!(settings(&["--pr"]).err().unwrap().contains("--push-prefix"));
        assert!(settings(&["--push-prefix", "a/"]).err().unwrap().contains("--repo"));
        assert!(settings(&["--approvals", "maybe"]).is_err());
        assert!(settings(&["--idle-seconds", "0"]).is_err());
        assert!(
            settings(&["--token-env", "UNIFIED_WORKER_SURELY_UNSET"])
                .err()
                .unwrap()
                .contains("is not set")
        );
    }
}
