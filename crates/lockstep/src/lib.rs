//! The `lockstep` binary's code, as a library so that the configuration
//! parser can be fuzzed and the binary stays a thin `main`: parse the
//! command line, run it.

mod admin;
pub mod cli;
pub mod config;
mod demo;
pub mod keys;
mod reach;
mod serve;
pub mod sources;
