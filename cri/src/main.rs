//! `nanovisor-cri [--config FILE] [--debug]`: reads the configuration, starts the nanovisor
//! handler (if configured) in the background, serves the CRI on the configured socket, and on
//! SIGTERM or SIGINT stops accepting, shuts the handler down and exits 0.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use nanovisor_cri::config::{self, Config};
use nanovisor_cri::handler::Handler;
use nanovisor_cri::image_service::ImageServer;
use nanovisor_cri::runtime_service::RuntimeServer;
use nanovisor_cri::server;
use nanovisor_cri::upstream::Upstream;
use tokio::signal::unix::{signal, SignalKind};

/// How long calls under way (and open event streams) may run on after a signal.
const DRAIN: Duration = Duration::from_secs(10);

/// A CRI endpoint for kubelet: the nanovisor runtime handler served here, every other handler
/// and all images forwarded to containerd.
#[derive(Parser)]
#[command(name = "nanovisor-cri", version)]
struct Cli {
    /// The configuration file (TOML: listen, upstream, [nanovisor]).
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log nanovisor-cri's and its handler's debug messages (otherwise RUST_LOG, default
    /// info).
    #[arg(long)]
    debug: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.debug);
    let config = Config::load(&cli.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(run(config));
    // Blocking work a handler call left (a runsc it waits for) must not keep us from exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if debug {
        // Ours and the handler's; the gRPC libraries' debug lines are one per HTTP/2 frame.
        EnvFilter::new("info,nanovisor_cri=debug,nanovisor_pods=debug,shim=debug")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;

    let upstream = Upstream::new(&config.upstream);
    tokio::spawn(upstream.clone().watch());
    let handler = match config.nanovisor {
        Some(pods_config) => Some(Handler::start(pods_config)),
        None => {
            tracing::info!("no [nanovisor] table: forwarding every runtime handler upstream");
            None
        }
    };
    let listener = server::listen(&config.listen).await?;
    tracing::info!(
        listen = %config.listen.display(),
        upstream = %config.upstream.display(),
        "serving the CRI"
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(server::serve(
        listener,
        RuntimeServer::new(upstream.clone(), handler.clone()),
        ImageServer::new(upstream),
        async {
            let _ = stopped.await;
        },
    ));
    let signal = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        result = &mut serving => {
            // The server ended on its own: that is an error, whatever it says.
            let _ = std::fs::remove_file(&config.listen);
            result.context("the CRI server panicked")??;
            anyhow::bail!("the CRI server stopped");
        }
    };
    tracing::info!("{signal}: no longer accepting; shutting down");
    let _ = stop.send(());
    match tokio::time::timeout(DRAIN, &mut serving).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("the CRI server: {e}"),
        Ok(Err(e)) => tracing::warn!("the CRI server task: {e}"),
        Err(_) => {
            tracing::warn!("calls still under way after {DRAIN:?}; closing them");
            serving.abort();
        }
    }
    if let Some(handler) = handler {
        handler.shutdown().await;
    }
    if let Err(e) = std::fs::remove_file(&config.listen) {
        tracing::warn!("removing {}: {e}", config.listen.display());
    }
    tracing::info!("stopped");
    Ok(())
}
