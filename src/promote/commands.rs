//! The promotion commands as the binary runs them: build the source and sinks from
//! the arguments, run, and say whether everything succeeded.

use std::path::Path;

use ferry_storage::AuditAction;

use super::bundle::{self, ArchiveSink};
use super::node::{NodeSink, NodeStore};
use super::registry::RegistrySink;
use super::source::{LayoutSource, RegistrySource};
use super::{resolve, run, Out, PromoteError, Promotion, RegistryRef, RunOptions, Sink, Source};
use crate::config::Config;

/// How a command ended: `ok` is false on any failure or disagreement.
pub struct Outcome {
    pub ok: bool,
}

async fn node_sink(
    config: &Path,
    src: &RegistryRef,
    upstream: Option<&str>,
    action: AuditAction,
) -> Result<Box<dyn Sink>, PromoteError> {
    let config = Config::load(config).map_err(|e| PromoteError::Usage(e.to_string()))?;
    let node = NodeStore::open(&config, true).await?;
    let placement = node.placement(src, upstream)?;
    Ok(Box::new(NodeSink::new(node, placement, action)))
}

pub async fn sync(
    manifest: &Path,
    config: Option<&Path>,
    upstream: Option<&str>,
    opts: RunOptions,
    out: Out<'_>,
) -> Result<Outcome, PromoteError> {
    let promotion = Promotion::load(manifest)?;
    if config.is_none() && promotion.destinations.is_empty() {
        return Err(PromoteError::Usage(format!(
            "nothing to sync into: give --config NODE.toml, or list a destination registry in {}",
            manifest.display()
        )));
    }
    if opts.prune && !promotion.destinations.is_empty() {
        return Err(PromoteError::Usage(
            "--prune is not implemented for registry destinations; run it with --config only, \
             from a manifest without destination registries"
                .into(),
        ));
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(config) = config {
        sinks.push(node_sink(config, &promotion.src, upstream, AuditAction::Promote).await?);
    }
    for dest in &promotion.destinations {
        sinks.push(Box::new(RegistrySink::new(dest)?));
    }
    let src = RegistrySource::new(&promotion.src)?;
    go(&src, &promotion, &sinks, opts, out).await
}

async fn go(
    src: &dyn Source,
    promotion: &Promotion,
    sinks: &[Box<dyn Sink>],
    opts: RunOptions,
    out: Out<'_>,
) -> Result<Outcome, PromoteError> {
    let (closures, errors) = resolve(src, promotion, out).await?;
    let sinks: Vec<&dyn Sink> = sinks.iter().map(AsRef::as_ref).collect();
    let report = run(src, promotion, &closures, &sinks, opts, out).await?;
    Ok(Outcome {
        ok: report.ok && errors.is_empty(),
    })
}

pub async fn export(manifest: &Path, output: &Path, out: Out<'_>) -> Result<Outcome, PromoteError> {
    let promotion = Promotion::load(manifest)?;
    let src = RegistrySource::new(&promotion.src)?;
    let (closures, errors) = resolve(&src, &promotion, out).await?;
    let sink = ArchiveSink::create(output, &promotion.src)?;
    let result = run(
        &src,
        &promotion,
        &closures,
        &[&sink],
        RunOptions::default(),
        out,
    )
    .await;
    // Publish the tar only when everything went in.
    let ok = matches!(&result, Ok(r) if r.ok) && errors.is_empty();
    if ok {
        sink.publish()?;
        out(&format!("wrote {}", output.display()));
    } else {
        sink.abandon();
    }
    result?;
    Ok(Outcome { ok })
}

#[allow(clippy::too_many_arguments)]
pub async fn import(
    bundle_path: &Path,
    config: Option<&Path>,
    to: Option<&str>,
    upstream: Option<&str>,
    registry: Option<&str>,
    opts: RunOptions,
    out: Out<'_>,
) -> Result<Outcome, PromoteError> {
    let dir = bundle_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let unpacked = tempfile::Builder::new()
        .prefix(".ferry-import")
        .tempdir_in(dir)
        .map_err(|e| PromoteError::Usage(format!("{}: {e}", dir.display())))?;
    let files = bundle::unpack(bundle_path, unpacked.path())?;
    out(&format!(
        "unpacked {files} file(s) from {}",
        bundle_path.display()
    ));
    let label = bundle_path.display().to_string();
    let promotion = bundle::promotion(unpacked.path(), &label, registry)?;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(config) = config {
        sinks.push(node_sink(config, &promotion.src, upstream, AuditAction::Import).await?);
    }
    if let Some(url) = to {
        let reg = RegistryRef::parse(url)
            .map_err(|e| PromoteError::Usage(format!("--to {url:?}: {e}")))?;
        sinks.push(Box::new(RegistrySink::new(&reg)?));
    }
    if sinks.is_empty() {
        return Err(PromoteError::Usage(
            "nothing to import into: give --config NODE.toml or --to URL".into(),
        ));
    }
    let src = LayoutSource::new(unpacked.path());
    go(&src, &promotion, &sinks, opts, out).await
}

pub async fn audit(
    manifest: &Path,
    config: &Config,
    upstream: Option<&str>,
    out: Out<'_>,
) -> Result<Outcome, PromoteError> {
    let promotion = Promotion::load(manifest)?;
    let node = NodeStore::open(config, false).await?;
    let placement = node.placement(&promotion.src, upstream)?;
    let report = super::audit::audit(&promotion, &node, &placement).await?;
    out(report.text.trim_end());
    Ok(Outcome {
        ok: report.problems == 0,
    })
}
