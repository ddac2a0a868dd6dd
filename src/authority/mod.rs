//! The cluster's CAs on this node: every copy of each (the CA file, the kubeconfigs'
//! `certificate-authority-data`), renewing a CA with its own key, and moving a CA
//! certificate between nodes (export / import).
//!
//! [`copies`] reads the node once into [`copies::NodeCopies`] and turns "this copy now
//! holds these certificates" into [`crate::model::FileChange`]s, purely; it also knows
//! what holds each CA in memory and must restart ([`copies::restart_order`]).

pub mod copies;
/// Rotation to a new key, in phases (`ca rotate NAME start|trust|issue|finish|abort`).
pub mod rotation;

pub use copies::{
    canonical_name, restart_order, AnchorKind, AuthorityCopies, CopyError, NodeCopies, TrustAnchor,
    CA_NAMES,
};
