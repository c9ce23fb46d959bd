//! One module per subcommand: its clap arguments and its `run`.

pub mod check;
pub mod flows;
pub mod matrix;
