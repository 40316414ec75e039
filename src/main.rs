use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command};
use ferry::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
        Command::Redirect { config: path } => {
            let config = ferry::config::redirect::RedirectConfig::load(&path)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let stop = shutdown_signal();
                ferry::redirect::server::serve(config, path, stop).await
            })?;
            Ok(())
        }
        Command::Serve { config } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default()?,
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve_until_signal(config))?;
            Ok(())
        }
    }
}

/// How long open connections may take to finish after SIGTERM before ferry exits anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until SIGINT/SIGTERM, then drains connections for at most [`SHUTDOWN_GRACE`].
async fn serve_until_signal(config: Config) -> Result<(), ferry::StartError> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = ferry::serve(config, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = shutdown_signal() => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; exiting");
                    Ok(())
                }
            }
        }
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
