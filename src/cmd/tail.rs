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
    for p in problems {
        eprintln!(
            "beacon tail: {} at byte {}: {}",
            p.path.display(),
            p.offset,
            p.what
        );
    }
    Ok(())
}
