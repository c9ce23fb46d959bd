//! One module per subcommand: its clap arguments and its `run`.

pub mod check;
pub mod duration;
pub mod firewall;
pub mod fleet;
pub mod flows;
pub mod generate;
pub mod graph;
pub mod learn;
pub mod matrix;
pub mod pipe;
pub mod probe;
pub mod report;
pub mod run;
pub mod sources;
pub mod top;

/// Resolves on SIGINT or SIGTERM: commands then finish their output and
/// detach from the kernel before exiting.
pub async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the process would die mid-output: wait forever
        // instead, and let the default disposition of a later signal apply.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
