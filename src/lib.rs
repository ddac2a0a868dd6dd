//! cert-rotator: keeps a Kubernetes node's certificates valid from the node alone.
//!
//! The flow, one module each: [`config`] -> [`inventory`] -> [`plan`] -> [`issue`] ->
//! write -> [`restart`] -> [`verify`] -> [`report`], sequenced by [`pass`]. [`node`] resolves every path under `--root`,
//! [`pki`] and [`kubeconfig`] read the files, [`fixture`] builds kubeadm-faithful nodes
//! for the demo and the tests.

pub mod ca;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fixture;
pub mod inventory;
pub mod issue;
pub mod kubeconfig;
pub mod node;
pub mod pass;
pub mod pki;
pub mod plan;
pub mod remote_ca;
pub mod renew;
pub mod report;
pub mod restart;
pub mod verify;
pub mod write;
