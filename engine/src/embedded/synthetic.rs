//! Synthetic campaigns: a benchmark's data set, with ids a load generator can compute.

use crate::model::Campaign;

/// First id of the synthetic campaigns.
pub const SYNTHETIC_ID_FIRST: u64 = 1_000_000;

/// `count` valid campaigns with ids from `SYNTHETIC_ID_FIRST`, as a benchmark's data set.
pub fn synthetic_campaigns(count: usize) -> impl Iterator<Item = Campaign> {
    (0..count as u64).map(|i| {
        let id = SYNTHETIC_ID_FIRST + i;
        Campaign {
            program_id: id.to_string(),
            program_name: format!("program{id}"),
            checksum: (id % 1000).to_string(),
            customer_id: (i % 100_000) as i32 + 1,
            customer_name: format!("Customer{}", i % 100_000 + 1),
            valid: true,
            version: None,
            landing_url: None,
        }
    })
}
