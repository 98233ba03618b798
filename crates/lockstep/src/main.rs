//! `lockstep`: parse the command line, wire, run.

mod admin;
mod cli;
mod config;
mod demo;
mod reach;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockstep: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
