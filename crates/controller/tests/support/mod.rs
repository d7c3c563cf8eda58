//! Helpers shared by the controller's kmock tests (`loop.rs`, `trust_manager_loop.rs`).

use std::time::{Duration, Instant};

use kube::Api;

/// Polls `check` every 100 ms until it holds; panics naming `what` after 20 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 20 s: {what}");
}

/// The object, or `None` on any 404 (kmock's 404 carries the reason `Object Not Found`, not
/// `NotFound`, so kube's `get_opt` does not recognise it).
pub(crate) async fn get<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(o) => Some(o),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => panic!("GET {name}: {e}"),
    }
}
