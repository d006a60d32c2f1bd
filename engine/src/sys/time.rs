//! Time limits on a shard's own timers.

use std::time::Duration;

/// Runs `fut` for at most `limit` on this shard's timers; `None` if the time ran out.
pub async fn timeout<F: std::future::Future>(limit: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}
