//! `unified-worker exec`: starts a job on a worker (or a fleet behind one address), renders its stream for a person
//! or as JSON lines, waits out busy replicas, reattaches after a dropped connection, answers the job's permission
//! questions when it runs with approvals, holds a conversation with `--chat`, and maps the outcome to an exit code
//! (0 completed, 1 job error, 2 bad usage, 3 no worker reached in time).

mod approvals;
mod args;
mod chat;
mod question;
mod render;
mod session;

use std::io::{IsTerminal, Read};

use approvals::Answering;
pub use args::{Credentials, ExecArgs, JobTarget};

pub const EXIT_COMPLETED: i32 = 0;
pub const EXIT_JOB_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

pub async fn run(args: ExecArgs) -> i32 {
    let mut args = args.normalize();
    // Decided before the prompt is read from stdin: a run that could never answer must not wait for stdin first.
    let answering = match answering(&args) {
        Ok(answering) => answering,
        Err(message) => {
            eprintln!("unified-worker exec: {message}");
            return EXIT_USAGE;
        }
    };
    if args.chat && args.prompt.is_none() && !std::io::stdin().is_terminal() {
        eprintln!(
            "unified-worker exec: with --chat the next messages are read from stdin, so give the first prompt as an \
             argument"
        );
        return EXIT_USAGE;
    }
    if args.prompt.is_none() && args.chat {
        args.prompt = chat::first_message();
        if args.prompt.is_none() {
            return EXIT_USAGE;
        }
    }
    if args.prompt.is_none() {
        let mut prompt = String::new();
        if std::io::stdin().read_to_string(&mut prompt).is_err() || prompt.trim().is_empty() {
            eprintln!("unified-worker exec: no prompt given (as an argument or on stdin); see exec --help");
            return EXIT_USAGE;
        }
        args.prompt = Some(prompt);
    }
    let body = match args.request_body() {
        Ok(body) => body,
        Err(message) => {
            eprintln!("unified-worker exec: {message}");
            return EXIT_USAGE;
        }
    };
    let renderer = render::Renderer::new(args.json);
    let chatting = args.chat;
    let mut session = session::Session::new(args, renderer);
    if let Some(answering) = answering {
        session = session.answering(answering);
    }
    if chatting {
        session = match session.chatting() {
            Ok(session) => session,
            Err(e) => {
                eprintln!("unified-worker exec: cannot read the conversation's input: {e}");
                return EXIT_USAGE;
            }
        };
    }
    session.run(body).await
}

/// Who answers the job's questions, if it asks any. A run nobody can answer is refused: headless, it would wait for
/// each question until the worker's timeout decides it.
fn answering(args: &ExecArgs) -> Result<Option<Answering>, &'static str> {
    if !args.approvals_enabled() {
        return Ok(None);
    }
    if let Some(auto) = args.auto_answer() {
        return Ok(Some(Answering::Auto(auto)));
    }
    if args.chat {
        // Both would read the same input: a line could not say whether it is a message or an answer.
        return Err("with --chat the input carries the messages; answer questions with --approve-all or --reject-all");
    }
    if args.json {
        if args.prompt.is_none() {
            return Err(
                "with --json and --approvals the answers are read from stdin, so give the prompt as an \
                        argument (or answer automatically with --approve-all or --reject-all)",
            );
        }
        return Ok(Some(Answering::Lines));
    }
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return Ok(Some(Answering::Terminal));
    }
    Err(
        "--approvals needs someone to answer the job's questions, and stdin and stdout are not a terminal: \
         add --approve-all or --reject-all to answer them automatically, or --json to answer with lines on stdin",
    )
}
