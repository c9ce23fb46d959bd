use std::process::ExitCode;

use clap::Parser;
use monitor::cli::Cli;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("monitor: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
