use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command};
use ferry::config::server::{LogConfig, LogFormat};
use ferry::config::Config;
use ferry::promote::{commands, RunOptions};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr as `[log]` says; `RUST_LOG` overrides the level.
fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Redirect { .. }
    ) {
        init_logging(&LogConfig::default());
    }
    match cli.command {
        Command::Probe { url, insecure } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .danger_accept_invalid_certs(insecure)
                    .timeout(std::time::Duration::from_secs(5))
                    .build()?;
                let status = client.get(&url).send().await?.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("{url} answered {status}"))
                }
            })
        }
        Command::Sync {
            manifest,
            config,
            upstream,
            dry_run,
            allow_tag_move,
            prune,
        } => {
            let opts = RunOptions {
                dry_run,
                allow_tag_move,
                prune,
            };
            promotion_result(block_on(commands::sync(
                &manifest,
                config.as_deref(),
                upstream.as_deref(),
                opts,
                &print_line,
            ))?)
        }
        Command::Export { manifest, output } => {
            promotion_result(block_on(commands::export(&manifest, &output, &print_line))?)
        }
        Command::Import {
            bundle,
            config,
            to,
            upstream,
            registry,
            dry_run,
            allow_tag_move,
        } => {
            let opts = RunOptions {
                dry_run,
                allow_tag_move,
                prune: false,
            };
            promotion_result(block_on(commands::import(
                &bundle,
                config.as_deref(),
                to.as_deref(),
                upstream.as_deref(),
                registry.as_deref(),
                opts,
                &print_line,
            ))?)
        }
        Command::Audit {
            manifest,
            config,
            upstream,
        } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default()?,
            };
            promotion_result(block_on(commands::audit(
                &manifest,
                &config,
                upstream.as_deref(),
                &print_line,
            ))?)
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            print!("{}", config.render());
            Ok(())
        }
        Command::Index { config, command } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default()?,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let outcome = rt.block_on(ferry::admin::run(&command, &config))?;
            print!("{}", outcome.text);
            if outcome.ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("problems found"))
            }
        }
        Command::Redirect {
            config: path,
            check,
        } => {
            let config = ferry::config::redirect::RedirectConfig::load(&path)?;
            if check {
                // The routing table has its own checks (a prefix in two regions).
                ferry::redirect::Routing::new(config.clone())?;
                println!(
                    "{}: ok ({} regions, {} nodes)",
                    path.display(),
                    config.regions.len(),
                    config.nodes.len()
                );
                return Ok(());
            }
            init_logging(&config.server.log);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(ferry::redirect::server::serve(
                config,
                path,
                shutdown_signal(),
            ))?;
            Ok(())
        }
        Command::Serve { config } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default()?,
            };
            init_logging(&config.server.log);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(ferry::serve(config, shutdown_signal()))?;
            Ok(())
        }
    }
}

fn print_line(line: &str) {
    println!("{line}");
}

fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, ferry::promote::PromoteError>>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Runtime::new()?;
    Ok(rt.block_on(fut)?)
}

fn promotion_result(outcome: commands::Outcome) -> anyhow::Result<()> {
    if outcome.ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!("failed (see above)"))
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
