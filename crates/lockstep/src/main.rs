//! `lockstep`: parse the command line, wire, run.

use std::process::ExitCode;

use clap::Parser;
use lockstep::cli;

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
