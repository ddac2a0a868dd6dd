//! `cert-rotator signer`: the certificates-API signer's command (docs/csr.md).

use std::path::Path;
use std::process::ExitCode;

use super::context::Context;
use super::say;
use crate::node::NodeRoot;
use crate::signer::{serve, ServeError};

pub fn signer(root: &NodeRoot, config_file: Option<&Path>, rounds: Option<u64>) -> ExitCode {
    let ctx = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    match serve(root, &ctx.settings.csr, &ctx.settings.signer, rounds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            say(&e.to_string());
            // Nothing configured is the operator's to fix (2); a kubeconfig that cannot
            // be used may be a node still being set up (1, systemd retries).
            ExitCode::from(match e {
                ServeError::NoSigner | ServeError::Config(_) => 2,
                ServeError::Client(_) => 1,
            })
        }
    }
}
