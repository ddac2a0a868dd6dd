//! The sending of a pass's Events and summary against a fake API server (a closure per
//! verb): what is refused and what is unreachable.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn refusal(status: u16) -> ApiError {
    ApiError::Http {
        method: "POST",
        path: EVENTS_PATH.into(),
        status,
        message: "refused".into(),
    }
}

fn unreachable() -> ApiError {
    ApiError::Transport {
        method: "POST",
        path: EVENTS_PATH.into(),
        reason: "Connection refused".into(),
    }
}

fn events(n: usize) -> Vec<NodeEvent> {
    (0..n)
        .map(|i| NodeEvent::normal("CertificateRenewed", format!("event {i}")))
        .collect()
}

fn summary() -> NodePatch {
    NodePatch {
        body: json!({"metadata": {"annotations": {"a": "b"}}}),
        said: "1 certificate".into(),
    }
}

/// Posts through `answers` in order (Ok past their end); returns what was posted.
fn run(
    answers: Vec<Result<(), ApiError>>,
    patch_answer: Result<(), ApiError>,
    n: usize,
) -> (Delivery, Vec<String>, bool) {
    let answers = RefCell::new(answers.into_iter());
    let posted = RefCell::new(Vec::new());
    let patched = RefCell::new(false);
    let mut patch_answer = Some(patch_answer);
    let d = deliver(
        |body, _| {
            posted
                .borrow_mut()
                .push(body["message"].as_str().unwrap_or_default().to_string());
            answers.borrow_mut().next().unwrap_or(Ok(()))
        },
        |_, _| {
            *patched.borrow_mut() = true;
            patch_answer.take().unwrap_or(Ok(()))
        },
        "node-1",
        &events(n),
        Some(&summary()),
        Instant::now() + Duration::from_secs(60),
    );
    (d, posted.into_inner(), patched.into_inner())
}

#[test]
fn a_refused_event_does_not_stop_the_others_nor_the_summary() {
    let (d, posted, patched) = run(
        vec![
            Err(refusal(403)),
            Ok(()),
            Err(refusal(422)),
            Err(refusal(409)),
        ],
        Ok(()),
        5,
    );
    assert_eq!(posted.len(), 5, "{posted:?}");
    assert!(patched);
    assert_eq!(
        d,
        Delivery {
            sent: 2,
            refused: vec!["Event CertificateRenewed".to_string(); 3],
            summary_sent: true,
            cut_short: false,
        }
    );
}

#[test]
fn a_transport_failure_ends_the_sending_and_skips_the_summary() {
    let (d, posted, patched) = run(vec![Ok(()), Err(unreachable())], Ok(()), 5);
    assert_eq!(posted, ["event 0", "event 1"]);
    assert!(!patched);
    assert!(d.cut_short);
    assert_eq!(d.sent, 1);
}

#[test]
fn refused_credentials_throttling_or_a_failing_server_end_the_sending() {
    for status in [401, 429, 500, 503] {
        let (d, posted, patched) = run(vec![Ok(()), Err(refusal(status))], Ok(()), 5);
        assert_eq!(posted, ["event 0", "event 1"], "HTTP {status}");
        assert!(!patched, "HTTP {status}");
        assert!(d.cut_short && d.refused.is_empty(), "HTTP {status}: {d:?}");
        assert_eq!(d.sent, 1);
        // The summary alone: not said as a refusal of the Node.
        let (d, _, patched) = run(vec![], Err(refusal(status)), 1);
        assert!(patched && !d.summary_sent && d.refused.is_empty(), "{d:?}");
    }
}

#[test]
fn a_refused_summary_is_said_as_the_node() {
    let (d, posted, patched) = run(vec![], Err(refusal(403)), 2);
    assert_eq!(posted.len(), 2);
    assert!(patched);
    assert_eq!(d.refused, ["Node node-1"]);
    assert!(!d.summary_sent);
}

#[test]
fn a_spent_deadline_sends_nothing() {
    let mut calls = 0;
    let d = deliver(
        |_, _| {
            calls += 1;
            Ok(())
        },
        |_, _| Ok(()),
        "node-1",
        &events(3),
        Some(&summary()),
        Instant::now(),
    );
    assert_eq!(calls, 0);
    assert!(d.cut_short && !d.summary_sent);
}

#[test]
fn an_event_is_about_the_node_with_its_reason_and_a_bounded_message() {
    let e = NodeEvent::warning("CertificateExpirationWarning", "x".repeat(5000));
    let b = event_body("node-1", &e);
    assert_eq!(b["involvedObject"]["name"], "node-1");
    assert_eq!(b["type"], "Warning");
    assert_eq!(b["reason"], "CertificateExpirationWarning");
    assert_eq!(b["message"].as_str().map(str::len), Some(1000));
}
