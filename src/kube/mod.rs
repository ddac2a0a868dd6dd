//! The Kubernetes API seen from the node: a client built from a kubeconfig (the node's
//! own files, through the `--root` gate), the few API objects the agent reads and
//! writes (CertificateSigningRequest, Lease, Node), as serde structs of their wire form,
//! and the Events and the inventory's summary a pass leaves on its Node.
//!
//! Hand-written rather than k8s-openapi: measured, k8s-openapi's types for the same
//! objects add more to the packaged binary than the budget has left
//! (docs/performance.md, "The Kubernetes API types"), and the agent reads a handful of
//! fields of two kinds. Unknown fields are kept (`rest`), so an object written back
//! loses nothing a newer API server added.

mod client;
pub mod events;
pub mod lease;
pub mod serving;
pub mod types;

pub use client::{b64, ApiClient, ApiError, ClientOptions, Reply};
