//! `cert-rotator signer`: the signer of the certificates API (docs/csr.md). It signs
//! the Approved CertificateSigningRequests of the signerNames configured in
//! `[[signer]]` with a CA whose files are on this node, or through a cfssl server
//! (cfssl.rs: the project's one cfssl client, nothing it returns trusted), writing `status.certificate`
//! through the `/status` subresource exactly as the seed's administrator does with
//! `cfssl sign` and `kubectl replace --raw`; it fails (condition `Failed`, with the
//! reason) a CSR whose request, key or usages the profile does not allow, and never
//! touches a CSR that is pending, denied, failed or issued.
//!
//! It can also approve the kubelets' serving CSRs (`csr.approve_kubelet_serving`,
//! approve.rs), which the controller-manager then signs.
//!
//! Pure decisions in decide.rs and approve.rs, the request's reading in request.rs, the certificate
//! in issue.rs; the loop that lists, leads and writes in service.rs.

pub mod approve;
pub mod cfssl;
pub mod decide;
pub mod issue;
pub mod request;
pub mod rest;
mod service;

pub use service::{serve, ServeError};
