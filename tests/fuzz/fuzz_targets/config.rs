//! Configuration sections as the loader reads them: TOML text into each section's type, then
//! its range checks. Any text is refused with an error or accepted, never a panic.
#![no_main]

use beacon_engine::config::{CampaignsConfig, EngineConfig, FieldError, SegmentsConfig};
use beacon_kinesis::KinesisConfig;
use beacon_redis::RedisConfig;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// Reads `[name]` as a `T` and range-checks it.
fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    validate: impl Fn(&T) -> Result<(), Vec<FieldError>>,
) {
    let Some(Ok(cfg)) = table.get(name).map(|v| v.clone().try_into::<T>()) else {
        return;
    };
    if let Err(errors) = validate(&cfg) {
        assert!(!errors.is_empty());
        // Every error renders as the one line the loader prints for it.
        for e in &errors {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

fuzz_target!(|text: &str| {
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    section::<EngineConfig>(&table, "engine", EngineConfig::validate);
    section::<SegmentsConfig>(&table, "segments", SegmentsConfig::validate);
    section::<CampaignsConfig>(&table, "campaigns", CampaignsConfig::validate);
    section::<RedisConfig>(&table, "redis", RedisConfig::validate);
    section::<KinesisConfig>(&table, "kinesis", KinesisConfig::validate);
});
