//! `beacon health [--url URL]`: one GET of a running beacon's health endpoint, for container
//! HEALTHCHECKs (the image has no curl). Exit 0 on a 2xx answer; otherwise one line saying what
//! came back, and exit 2.

use std::time::Duration;

use anyhow::{bail, Context, Result};

pub fn run(url: &str, timeout_ms: u64) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .build()
        .into();
    let resp = agent
        .get(url)
        .call()
        .with_context(|| format!("no answer from {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}
