//! The renderers of `status` (table and JSON), the plan for people, the pass's events
//! (its summary, journal lines and Kubernetes Events), the Prometheus textfile and the
//! last-pass record. Everything here turns facts into text or bytes; the command line
//! writes them. (`ca status` is rendered by authority/status.rs.)

pub mod event;
pub mod journal;
pub mod metrics;
pub mod node_events;
pub mod node_summary;
pub mod pass;
pub mod plan;
pub mod status;
pub mod status_stream;

pub use metrics::{metrics_text, MetricsInput, PassResult};
pub use plan::{plan_text, reload_words};
pub use status::{AuthorityStatus, CertificateStatus, NotANode, Status};
pub use status_stream::{StatusStream, Streamed};
