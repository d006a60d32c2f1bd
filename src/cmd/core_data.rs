//! `beacon core-data load|put|delete`: writes campaign core data to Redis (hash and PUBLISH in
//! one MULTI/EXEC), as the reference's updater would.

use std::path::Path;

use anyhow::{bail, Context, Result};
use beacon_engine::model::{check_id, Campaign};
use beacon_redis::writer::Written;

use crate::cli::CoreDataCommand;
use crate::config::{self, Overrides};

pub fn run(command: CoreDataCommand) -> Result<()> {
    let redis_args = match &command {
        CoreDataCommand::Load { redis, .. }
        | CoreDataCommand::Put { redis, .. }
        | CoreDataCommand::Delete { redis, .. } => redis.clone(),
    };
    let mut overrides = Overrides::default();
    overrides.set("redis", "url", redis_args.redis_url.clone());
    let cfg = config::load(redis_args.config.as_ref(), overrides)?;
    let Some(url) = cfg.redis.url.clone() else {
        bail!("no Redis to write to: pass --redis-url redis://host:port (or set REDIS_HOST, BEACON_REDIS_URL, or [redis] url)");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut conn = beacon_redis::writer::connect(&cfg.redis)
            .await
            .with_context(|| format!("cannot connect to {}", beacon_redis::config::url_shown(&url)))?;
        let redis = &cfg.redis;
        match command {
            CoreDataCommand::Load { file, .. } => {
                let campaigns = read_campaigns(&file)?;
                let mut stale = 0;
                for c in &campaigns {
                    checked(c)?;
                    if beacon_redis::writer::put(&mut conn, redis, c).await? == Written::Stale {
                        stale += 1;
                    }
                }
                let (n, channel) = (campaigns.len() - stale, &redis.channel);
                eprintln!("beacon: wrote {n} programs to {url} and announced each on {channel}");
                if stale > 0 {
                    eprintln!("beacon: {stale} program(s) not written: Redis holds a newer version of each");
                }
            }
            CoreDataCommand::Put { program, .. } => {
                let c = Campaign::from(program);
                let written = beacon_redis::writer::put(&mut conn, redis, checked(&c)?).await?;
                stale_is_an_error(written, &c.program_id)?;
            }
            CoreDataCommand::Delete {
                program_id,
                version,
                ..
            } => {
                let written =
                    beacon_redis::writer::delete(&mut conn, redis, &program_id, version).await?;
                stale_is_an_error(written, &program_id)?;
            }
        }
        Ok(())
    })
}

fn stale_is_an_error(written: Written, id: &str) -> Result<()> {
    match written {
        Written::Yes => Ok(()),
        Written::Stale => bail!(
            "program {id}: not written, Redis holds a newer version of it (or of its deletion); \
             pass a higher --version"
        ),
    }
}

fn read_campaigns(file: &Path) -> Result<Vec<Campaign>> {
    let json =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&json).with_context(|| {
        format!(
            "{} is not a JSON array of programs in the reference's format",
            file.display()
        )
    })
}

/// `c`, if its id is one the engine would accept in a request path.
fn checked(c: &Campaign) -> Result<&Campaign> {
    check_id(&c.program_id)
        .map_err(|why| anyhow::anyhow!("program id {:?}: {}", c.program_id, why.as_str()))?;
    Ok(c)
}
