//! The `enrol-ledger` binary: parses the command line and hands over to `cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    enrol_ledger::cli::main(enrol_ledger::cli::Cli::parse())
}
