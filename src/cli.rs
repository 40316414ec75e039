//! Command-line definitions (clap) only.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Inspect, check and repair the cache index of the node FILE configures.
    Index {
        /// The node's config file (default: the embedded default).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Run the redirector: send each client to the nearest healthy node.
    Redirect {
        /// Redirector config file (TOML); see config/redirect.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Validate the file (and its range files) and exit.
        #[arg(long)]
        check: bool,
    },
    /// Exit 0 when URL answers 2xx within 5 s (a container health check that needs
    /// no curl in the image).
    Probe {
        #[arg(default_value = "http://127.0.0.1:5000/readyz")]
        url: String,
        /// Accept any TLS certificate (the probe runs beside the server it checks).
        #[arg(long)]
        insecure: bool,
    },
    /// Copy the images a promotion manifest names into a node's store (pinned) and
    /// into its destination registries: only what is missing, every digest verified.
    Sync {
        /// The promotion manifest (YAML); see config/promotion.yaml.
        #[arg(long, short)]
        manifest: PathBuf,
        /// The node whose store to fill (the node must be stopped). Without it, only
        /// the manifest's destination registries are written.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// File the images under this upstream of the node, by their manifest names
        /// (default: the upstream the source registry's host routes to).
        #[arg(long)]
        upstream: Option<String>,
        /// Print the plan and copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// Let a tag that already points elsewhere move (refused by default).
        #[arg(long)]
        allow_tag_move: bool,
        /// Remove the node's promoted tags of the listed images that the manifest no
        /// longer names, and the content only they held.
        #[arg(long)]
        prune: bool,
    },
    /// Write everything a promotion manifest names to an OCI image layout tarball.
    Export {
        #[arg(long, short)]
        manifest: PathBuf,
        /// The bundle to write (e.g. bundle.tar).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Load a bundle written by `ferry export` into a node's store (pinned) or a registry.
    Import {
        bundle: PathBuf,
        /// The node whose store to fill (the node must be stopped).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A registry to push to instead: http[s]://host[:port][/path].
        #[arg(long)]
        to: Option<String>,
        /// See `sync --upstream`.
        #[arg(long)]
        upstream: Option<String>,
        /// The registry the bundle's images came from, when the bundle does not say.
        #[arg(long)]
        registry: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        allow_tag_move: bool,
    },
    /// Compare a node's promoted content with a promotion manifest; exit non-zero on
    /// anything missing or unexpected.
    Audit {
        #[arg(long, short)]
        manifest: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// See `sync --upstream`.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Validate a config file and print the effective settings.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Bytes, blobs, manifests, repositories, hit ratio, oldest access.
    Stats,
    /// List blobs, largest or least recently used first.
    Ls {
        #[arg(long, value_enum, default_value = "lru")]
        order: LsOrder,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Compare index and store; exits non-zero on problems.
    Check {
        /// Recompute every stored blob's digest.
        #[arg(long)]
        verify: bool,
        /// Fix what is found (needs the node stopped).
        #[arg(long)]
        repair: bool,
    },
    /// Evict down to the low watermark now (needs the node stopped).
    Gc,
    /// Pin REPO:TAG, REPO@DIGEST or DIGEST and what it references: never evicted.
    Pin { reference: String },
    /// Undo `pin`.
    Unpin { reference: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LsOrder {
    Size,
    Lru,
}
