//! Command-line definitions (clap) only.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "A pull-through caching OCI registry mirror"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a mirror node. Without --config: 127.0.0.1:5000, ./ferry-data, the public registries.
    Serve {
        /// Config file (TOML); see config/ferry.toml for every key.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective settings.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
}
