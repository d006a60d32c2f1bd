//! `beacon tail DIR`: every event under a data directory as JSON lines, in shard and segment
//! order; problems (a torn tail, a damaged frame) on standard error.

use std::path::Path;

use anyhow::{bail, Context, Result};
use beacon_engine::embedded::read_all;

pub fn run(dir: &Path) -> Result<()> {
    use std::io::Write;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the engine's --data-dir",
            dir.display()
        );
    }
    check_holds_beacon_data(dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    let problems = read_all(dir, |_, event| {
        if write_err.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, &event)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))
            {
                write_err = Some(e);
            }
        }
    })
    .with_context(|| format!("cannot read {}", dir.display()))?;
    out.flush()?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    for p in &problems {
        eprintln!(
            "beacon tail: {} at byte {}: {}",
            p.path.display(),
            p.offset,
            p.what
        );
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in {} (above); every readable record was printed",
            problems.len(),
            dir.display()
        );
    }
    Ok(())
}

/// Refuses a directory that is not an engine's data directory (a shard's folder, an empty
/// folder, some other directory), which would otherwise print nothing and look like success.
fn check_holds_beacon_data(dir: &Path) -> Result<()> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n.starts_with("shard-")) {
        return Ok(());
    }
    if names.iter().any(|n| n.ends_with(".seg")) {
        bail!(
            "{} is one shard's folder; pass the data directory above it (the engine's --data-dir)",
            dir.display()
        );
    }
    bail!(
        "{} holds no beacon data: expected shard-<k>/ folders of segment files, as the engine's \
         --data-dir holds when events go to segment files",
        dir.display()
    )
}
