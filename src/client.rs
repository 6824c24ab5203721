//! `unified-worker exec`: starts a job on a worker (or a fleet behind one address), renders its stream for a person
//! or as JSON lines, waits out busy replicas, reattaches after a dropped connection, and maps the outcome to an
//! exit code (0 completed, 1 job error, 2 bad usage, 3 no worker reached in time).

mod args;
mod render;
mod session;

use std::io::Read;

pub use args::ExecArgs;

pub const EXIT_COMPLETED: i32 = 0;
pub const EXIT_JOB_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

pub async fn run(args: ExecArgs) -> i32 {
    let mut args = args.normalize();
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
    session::Session::new(args, renderer).run(body).await
}
