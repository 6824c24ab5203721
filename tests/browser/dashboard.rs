//! The dashboard as a person uses it: the gateway's page with three workers (tiles, the line, a job run from the
//! form to its end, a busy tile opened), and a worker's own page whose job stream survives a dropped connection.

use serde_json::{Value, json};

use crate::{
    chromium::Browser,
    support::{
        FakeCli, INIT_LINE, SseStream, TestWorker, client,
        cutting_proxy::CuttingProxy,
        fleet::{LocalFleet, named_job, wait_idle_workers_as},
    },
};

const TOKEN: &str = "dashboard-test-token";

/// Claude Code's stream-json: text, a tool call and its result (with markup in it, which must stay text), then it
/// says it started and holds until `release-<prompt>`; then a last text and the result with the cost.
fn tool_calling_cli() -> FakeCli {
    FakeCli::new(&format!(
        "read -r PROMPT\n\
         echo '{INIT_LINE}'\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"id\":\"m1\",\"content\":[{{\"type\":\"text\",\"text\":\"Looking at '\"$PROMPT\"' now.\"}}]}}}}'\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"id\":\"m1\",\"content\":[{{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Bash\",\"input\":{{\"command\":\"ls src\"}}}}]}}}}'\n\
         printf '%s\\n' '{{\"type\":\"user\",\"message\":{{\"role\":\"user\",\"content\":[{{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"main.rs\\nlib.rs\\n<img src=x onerror=window.__injected=1>\",\"is_error\":false}}]}}}}'\n\
         echo \"$$\" > \"$DIR/started-$PROMPT\"\n\
         while [ ! -f \"$DIR/release-$PROMPT\" ]; do sleep 0.02; done\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"id\":\"m2\",\"content\":[{{\"type\":\"text\",\"text\":\"All done.\"}}]}}}}'\n\
         echo '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"All done.\",\"num_turns\":2,\"duration_ms\":1234,\"total_cost_usd\":0.0123,\"session_id\":\"fake-session\",\"usage\":{{\"input_tokens\":1200,\"output_tokens\":345}}}}'"
    ))
}

/// A job straight through the API (with the token), held by the fake CLI until released.
async fn hold(gateway: &TestWorker, name: &str) -> SseStream {
    let resp = client()
        .post(gateway.url("/execute"))
        .bearer_auth(TOKEN)
        .json(&named_job(name))
        .send()
        .await
        .expect("POST /execute");
    assert_eq!(resp.status(), 200);
    SseStream::new(resp)
}

async fn tiles_in(browser: &mut Browser, state: &str, n: usize) {
    let script = "return document.querySelectorAll('#tiles .tile.state-' + arguments[0]).length === arguments[1]";
    browser
        .wait_js(&format!("{n} {state} tiles"), script, vec![json!(state), json!(n)])
        .await;
}

/// The worker's own page, once it shows the worker idle.
async fn open_idle_worker(browser: &mut Browser, worker: &TestWorker) {
    browser.goto(&worker.url("/")).await;
    browser
        .wait_js(
            "the worker's card",
            "return document.getElementById('worker-card').textContent.includes('idle')",
            vec![],
        )
        .await;
}

/// The view of a job by id: `[data-job-id=…]` with the id quoted for CSS.
fn job(id: &str) -> String {
    format!(".job[data-job-id={}]", json!(id))
}

#[tokio::test]
async fn the_gateway_page_shows_the_fleet_the_line_and_a_job_from_the_form_to_its_cost() {
    let Some(mut browser) = Browser::start("gateway").await else {
        return;
    };
    let fleet = LocalFleet::with_cli(tool_calling_cli(), 3, &[("WORKER_API_TOKEN", TOKEN)]);
    let gw = fleet.gateway(&[("WORKER_API_TOKEN", TOKEN)]);
    wait_idle_workers_as(&gw, 3, Some(TOKEN)).await;

    // The page loads without a token and asks for it: the fleet (the workers' addresses, the jobs) is shown only
    // to whoever holds it.
    browser.goto(&gw.url("/")).await;
    browser
        .wait_js(
            "the token asked for",
            "return !document.getElementById('token-form').hidden",
            vec![],
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('.tile').length", vec![])
            .await,
        json!(0),
        "no worker shown before the token"
    );
    browser.type_into("#token", TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser
        .wait_js(
            "the token taken",
            "return !document.getElementById('token-set').hidden",
            vec![],
        )
        .await;
    tiles_in(&mut browser, "idle", 3).await;

    // All three busy: a job from the form waits in line and says where it stands.
    let mut held = Vec::new();
    for name in ["hold-1", "hold-2", "hold-3"] {
        held.push(hold(&gw, name).await);
        fleet.wait_started(name).await;
    }
    tiles_in(&mut browser, "busy", 3).await;
    let prompt = "Add a health check";
    browser.type_into("#prompt", prompt).await;
    browser.click("#run-button").await;
    let note = browser
        .wait_js(
            "the queue position",
            "const n = document.querySelector('.job .job-note.queued'); return n && !n.hidden && n.textContent",
            vec![],
        )
        .await;
    assert!(
        note.as_str()
            .is_some_and(|n| n.contains("position 1 of 1") && n.contains("3 of 3 workers busy")),
        "{note}"
    );
    let ours_id = browser
        .js("return document.querySelector('.job').dataset.jobId", vec![])
        .await
        .as_str()
        .expect("job id")
        .to_string();
    browser
        .wait_js(
            "the line on the page",
            "return document.querySelectorAll('#queue-rows tr').length === 1",
            vec![],
        )
        .await;
    browser.screenshot("queued").await;

    // A worker frees up: the job runs there; its text and its tool call (result folded, markup kept as text) show.
    fleet.release("hold-1");
    let view = job(&ours_id);
    browser
        .wait_js(
            "the assistant's text",
            &format!("const e = document.querySelector('{view} .ev-assistant'); return e && e.textContent"),
            vec![],
        )
        .await;
    assert_eq!(
        browser.text(&format!("{view} .ev-assistant")).await,
        format!("Looking at {prompt} now.")
    );
    browser
        .wait_js(
            "the tool call with its result",
            &format!("return document.querySelector('{view} .ev-tool.ok') !== null"),
            vec![],
        )
        .await;
    assert_eq!(browser.text(&format!("{view} .ev-tool .tool-name")).await, "Bash");
    assert_eq!(browser.text(&format!("{view} .ev-tool .tool-arg")).await, "ls src");
    let folded = browser
        .js(
            &format!("return document.querySelector('{view} .ev-tool').open"),
            vec![],
        )
        .await;
    assert_eq!(folded, json!(false), "the result is folded");
    assert!(
        browser
            .text(&format!("{view} .ev-tool .body"))
            .await
            .contains("<img src=x onerror=")
    );
    let injected = browser
        .js(
            "return [document.querySelectorAll('#job-views img').length, window.__injected === undefined]",
            vec![],
        )
        .await;
    assert_eq!(injected, json!([0, true]), "event text was parsed as markup");

    // Its worker's tile is busy with it.
    let tile = format!("#tiles .tile.state-busy[data-job-id={}]", json!(ours_id));
    browser
        .wait_js(
            "our job's tile",
            &format!("return document.querySelector('{tile}') !== null"),
            vec![],
        )
        .await;
    let address = browser
        .js(
            &format!("return document.querySelector('{tile}').dataset.address"),
            vec![],
        )
        .await;
    browser.screenshot("running").await;

    // A busy tile opens that job's stream (with the token), from its start.
    browser.click("#tiles .tile[data-job-id=\"hold-2\"]").await;
    browser
        .wait_js(
            "hold-2's stream",
            &format!("const e = document.querySelector('{} .ev-assistant'); return e && e.textContent === 'Looking at hold-2 now.'", job("hold-2")),
            vec![],
        )
        .await;
    browser.click(&format!(".tab[title={}]", json!(ours_id))).await;

    // The end: completed with its cost; the tile goes back to idle.
    fleet.release(prompt);
    browser
        .wait_js(
            "completed",
            &format!("return document.querySelector('{view}').dataset.state === 'completed'"),
            vec![],
        )
        .await;
    let summary = browser.text(&format!("{view} .job-summary")).await;
    assert!(
        summary.contains("completed") && summary.contains("$0.0123"),
        "{summary}"
    );
    assert!(summary.contains("1.2 s") && summary.contains("2 turns"), "{summary}");
    browser
        .wait_js(
            "the tile back to idle",
            "const t = document.querySelector('#tiles .tile[data-address=\"' + arguments[0] + '\"]'); return t && t.dataset.state === 'idle'",
            vec![address],
        )
        .await;

    // The chart counts what finished; then a busy moment for the picture: three running, one waiting.
    fleet.release("hold-2");
    fleet.release("hold-3");
    for stream in &mut held {
        assert_eq!(
            stream.collect().await.last().map(|e| e.kind().to_string()),
            Some("completed".into())
        );
    }
    browser
        .wait_js(
            "four finished in the chart",
            "return document.querySelector('#counters .counter:nth-child(3) .counter-value').textContent === '4'",
            vec![],
        )
        .await;
    tiles_in(&mut browser, "idle", 3).await;
    let mut busy = Vec::new();
    for name in ["review-api", "fix-flaky-test", "bump-deps", "write-docs"] {
        busy.push(hold(&gw, name).await);
    }
    tiles_in(&mut browser, "busy", 3).await;
    browser
        .wait_js(
            "one waiting",
            "return document.querySelectorAll('#queue-rows tr').length === 1",
            vec![],
        )
        .await;
    browser.screenshot("overview").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the browser console has errors: {errors:#?}");
    for name in ["review-api", "fix-flaky-test", "bump-deps", "write-docs"] {
        fleet.release(name);
    }
    drop(busy);
    browser.close().await;
}

#[tokio::test]
async fn a_worker_serves_the_page_for_its_job_and_a_dropped_stream_reattaches_without_losing_or_repeating() {
    let Some(mut browser) = Browser::start("worker").await else {
        return;
    };
    let cli = tool_calling_cli();
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("WORKER_ID", "worker-1"),
    ]);
    // The job's stream is cut right after the tool result; the page must reattach with Last-Event-ID.
    let proxy = CuttingProxy::start_on_any(worker.port, "event: tool_result").await;
    browser.goto(&format!("http://127.0.0.1:{}/", proxy.port)).await;
    browser
        .wait_js(
            "the worker's card",
            "return !document.getElementById('worker').hidden && document.getElementById('worker-card').textContent.includes('idle')",
            vec![],
        )
        .await;
    let layout = browser
        .js(
            "return [document.getElementById('fleet').hidden, document.getElementById('token-form').hidden]",
            vec![],
        )
        .await;
    assert_eq!(
        layout,
        json!([true, true]),
        "a worker without a token shows no fleet and asks for no token"
    );

    browser.type_into("#prompt", "tidy").await;
    browser.click("#run-button").await;
    cli.wait_for_file("started-tidy").await;
    proxy.wait_cut().await;
    cli.release("release-tidy");
    browser
        .wait_js(
            "completed",
            "const j = document.querySelector('.job'); return j && j.dataset.state === 'completed'",
            vec![],
        )
        .await;

    let counts: Value = browser
        .js(
            "const texts = [...document.querySelectorAll('.job .ev')].map(e => e.textContent);
             return {
               started: texts.filter(t => t.startsWith('Started on worker')).length,
               looking: texts.filter(t => t === 'Looking at tidy now.').length,
               tools: document.querySelectorAll('.job .ev-tool.ok').length,
               done: texts.filter(t => t === 'All done.').length,
             }",
            vec![],
        )
        .await;
    assert_eq!(
        counts,
        json!({ "started": 1, "looking": 1, "tools": 1, "done": 1 }),
        "events lost or repeated"
    );
    assert!(browser.text(".job .job-summary").await.contains("$0.0123"));
    browser.screenshot("worker-page").await;
    // The one error expected is the cut itself: the browser reports the stream it lost, then the page reattached.
    let errors = browser.console_errors().await;
    let (cut, other): (Vec<String>, Vec<String>) = errors
        .into_iter()
        .partition(|e| e.contains("/execute") && e.contains("ERR_INCOMPLETE_CHUNKED_ENCODING"));
    assert_eq!(cut.len(), 1, "the cut stream was reported once: {cut:?}");
    assert!(other.is_empty(), "the browser console has errors: {other:#?}");
    browser.close().await;
}

#[tokio::test]
async fn a_question_of_the_agent_is_answered_with_a_button() {
    let Some(mut browser) = Browser::start("approvals").await else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/acp-agent/agent.py");
    let agents = json!({"scripted": {"command": ["python3", script]}}).to_string();
    let worker = TestWorker::spawn(&[
        ("ACP_AGENTS", agents.as_str()),
        ("EXIT_AFTER_JOB", "false"),
        ("KEEP_WORKSPACE", "1"),
        ("WORKER_ID", "worker-1"),
    ]);
    open_idle_worker(&mut browser, &worker).await;
    browser.type_into("#prompt", "write hello.txt").await;
    browser
        .js(
            "document.getElementById('provider').value = 'acp:scripted'; document.getElementById('ask').checked = true",
            vec![],
        )
        .await;
    browser.click("#run-button").await;
    let question = browser
        .wait_js(
            "the question",
            "const q = document.querySelector('.job .question'); return q && q.textContent",
            vec![],
        )
        .await;
    let question = question.as_str().unwrap_or_default().to_string();
    assert!(question.contains("The agent asks: Write hello.txt"), "{question}");
    assert!(
        question.contains("new file ") && question.contains("hello.txt"),
        "{question}"
    );
    let job_id = browser
        .js("return document.querySelector('.job').dataset.jobId", vec![])
        .await;
    let file = worker.workspace_dir.join(job_id.as_str().unwrap()).join("hello.txt");
    assert!(!file.exists(), "written before the answer");
    browser.screenshot("approval-question").await;

    browser.click(".job .question button[data-option-id='allow']").await;
    browser
        .wait_js(
            "completed",
            "const j = document.querySelector('.job'); return j && j.dataset.state === 'completed'",
            vec![],
        )
        .await;
    let settled = browser
        .js(
            "const q = document.querySelector('.job .question');
             return [q.classList.contains('settled'), q.querySelector('button.chosen').dataset.optionId,
                     q.querySelector('.question-note').textContent,
                     [...q.querySelectorAll('button')].every(b => b.disabled)]",
            vec![],
        )
        .await;
    assert_eq!(settled, json!([true, "allow", "Settled · answered: allow", true]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the browser console has errors: {errors:#?}");
    browser.close().await;
}

/// A conversation from the page: the first prompt from the form, a follow-up from the message box, a message that
/// interrupts the turn the agent is stuck in, and the close; each turn shows, and the box goes with the job's end.
#[tokio::test]
async fn a_conversation_is_held_from_the_message_box_under_the_job() {
    let Some(mut browser) = Browser::start("conversation").await else {
        return;
    };
    // Answers each message with "You said: <message>"; a message that says "slow" keeps the turn busy until it is
    // interrupted.
    let cli = FakeCli::new(&format!(
        "read -r PROMPT\n\
         echo '{INIT_LINE}'\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"id\":\"m1\",\"content\":[{{\"type\":\"text\",\"text\":\"You said: '\"$PROMPT\"'\"}}]}}}}'\n\
         case \"$PROMPT\" in *slow*) while true; do sleep 0.05; done;; esac\n\
         echo '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"Answered '\"$PROMPT\"'\",\"num_turns\":1,\"duration_ms\":5,\"total_cost_usd\":0.01,\"session_id\":\"fake-session\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}'"
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("KILL_GRACE_SECONDS", "1"),
        ("WORKER_ID", "worker-1"),
    ]);
    open_idle_worker(&mut browser, &worker).await;
    browser.type_into("#prompt", "first").await;
    browser
        .js("document.getElementById('talk').checked = true", vec![])
        .await;
    browser.click("#run-button").await;
    let has_line = "return [...document.querySelectorAll('.job .ev')].some(e => e.textContent.includes(arguments[0]))";
    browser
        .wait_js("turn 1 done", has_line, vec![json!("Turn 1 done")])
        .await;
    let visible = browser
        .js("return !document.querySelector('.job .talk').hidden", vec![])
        .await;
    assert_eq!(visible, json!(true), "the message box shows under a conversation");

    browser.type_into(".job .talk textarea", "be slow").await;
    browser.click(".job .talk button[type=submit]").await;
    browser
        .wait_js("turn 2 running", has_line, vec![json!("You said: be slow")])
        .await;
    browser.type_into(".job .talk textarea", "third").await;
    browser
        .js(
            "[...document.querySelectorAll('.job .talk button')].find(b => b.textContent === 'Send and interrupt').click()",
            vec![],
        )
        .await;
    browser
        .wait_js("turn 2 interrupted", has_line, vec![json!("Turn 2 interrupted")])
        .await;
    browser
        .wait_js("turn 3 done", has_line, vec![json!("Turn 3 done")])
        .await;
    browser.screenshot("conversation").await;

    browser
        .js(
            "[...document.querySelectorAll('.job .talk button')].find(b => b.textContent === 'Close conversation').click()",
            vec![],
        )
        .await;
    browser
        .wait_js(
            "completed",
            "const j = document.querySelector('.job'); return j && j.dataset.state === 'completed'",
            vec![],
        )
        .await;
    let after = browser
        .js(
            "return [document.querySelector('.job .talk').hidden, document.querySelector('.job .job-summary').textContent]",
            vec![],
        )
        .await;
    assert_eq!(after[0], json!(true), "the message box goes with the job's end");
    // The CLI counts one turn for each run it finished: the interrupted one reported none.
    assert!(after[1].as_str().unwrap().contains("2 turns"), "{after}");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the browser console has errors: {errors:#?}");
    browser.close().await;
}
