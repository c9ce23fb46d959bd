use std::process::ExitCode;

use clap::Parser;
use monitor::{cli::Cli, cmd::pipe::is_closed_stdout};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match Cli::parse().run() {
        Ok(code) => code,
        // The reader of our output went away (`| head`): not an error, and
        // nothing to say (monitor::cmd::pipe explains why status 0).
        Err(e) if is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
