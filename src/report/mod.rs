//! The only renderer: `status` (table and JSON), the plan for people, the Prometheus
//! textfile and the last-pass record. Everything here turns facts into text or bytes;
//! the command line writes them.

pub mod metrics;
pub mod pass;
pub mod plan;
pub mod status;
pub mod status_stream;

pub use metrics::{metrics_text, MetricsInput, PassResult};
pub use plan::{plan_text, reload_words};
pub use status::{AuthorityStatus, CertificateStatus, NotANode, Status};
pub use status_stream::{StatusStream, Streamed};
