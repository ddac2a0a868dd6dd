//! CA lifecycle on the node: rotation to a new key in phases ([`rotation`]).

pub mod rotation;
