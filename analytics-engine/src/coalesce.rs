//! Single-flight with a short-lived cache: N callers asking the same question at about the same
//! time cause one computation.
//!
//! Every open dashboard asks for stats every 5 s; without this each request was a full query.
//! A caller finds either a fresh answer (younger than the TTL, returned at once), a computation
//! in flight (it waits for the same result), or nothing (it starts the computation). Failures
//! are not cached: the next caller tries again. The computation is a shared future, so it
//! survives its first caller hanging up as long as another one still waits.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

type Computation<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

enum Slot<V, E> {
    Ready { at: Instant, value: V },
    Running(Computation<V, E>),
}

/// Results by key; `V` and `E` are cloned to every waiter (use `Arc` for big values).
pub struct Coalescer<K, V, E> {
    ttl: Duration,
    slots: Arc<Mutex<HashMap<K, Slot<V, E>>>>,
}

impl<K, V, E> Coalescer<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn new(ttl: Duration) -> Self {
        Coalescer { ttl, slots: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The answer for `key`: cached, joined, or computed by `compute` (called at most once per
    /// computation, and only when no fresh or running one exists).
    pub async fn get<F, Fut>(&self, key: K, compute: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let computation = {
            let mut slots = self.slots.lock().expect("coalescer lock");
            match slots.get(&key) {
                Some(Slot::Ready { at, value }) if at.elapsed() < self.ttl => return Ok(value.clone()),
                Some(Slot::Running(c)) => c.clone(),
                _ => {
                    // Answers nobody asked for again are dropped here, so the map holds only
                    // keys asked within the last TTL (the key space is the callers' to choose).
                    let ttl = self.ttl;
                    slots.retain(|_, s| match s {
                        Slot::Ready { at, .. } => at.elapsed() < ttl,
                        Slot::Running(_) => true,
                    });
                    let fut = compute();
                    let slots_ref = self.slots.clone();
                    let key_ref = key.clone();
                    let c = async move {
                        let result = fut.await;
                        let mut slots = slots_ref.lock().expect("coalescer lock");
                        match &result {
                            Ok(v) => {
                                slots.insert(key_ref, Slot::Ready { at: Instant::now(), value: v.clone() });
                            }
                            Err(_) => {
                                slots.remove(&key_ref);
                            }
                        }
                        result
                    }
                    .boxed()
                    .shared();
                    slots.insert(key, Slot::Running(c.clone()));
                    c
                }
            }
        };
        computation.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_computation_and_the_cache() {
        let c: Arc<Coalescer<u32, u32, String>> = Arc::new(Coalescer::new(Duration::from_secs(3600)));
        let runs = Arc::new(AtomicU32::new(0));
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (c, runs, mut rx) = (c.clone(), runs.clone(), release_rx.clone());
            tasks.push(tokio::spawn(async move {
                c.get(1, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.wait_for(|r| *r).await;
                    Ok(42)
                })
                .await
            }));
        }
        // Every caller is either waiting on the one computation or has not called yet; let
        // them all reach it before releasing it.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release_tx.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Cached now: no new computation.
        let r = c.get(1, || async { Err::<u32, String>("must not run".into()) }).await;
        assert_eq!(r, Ok(42));
        // Another key is another computation.
        assert_eq!(c.get(2, || async { Ok::<u32, String>(7) }).await, Ok(7));
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_zero_ttl_recomputes() {
        let c: Coalescer<(), u32, String> = Coalescer::new(Duration::ZERO);
        assert_eq!(c.get((), || async { Err::<u32, String>("down".into()) }).await, Err("down".to_string()));
        assert_eq!(c.get((), || async { Ok::<u32, String>(1) }).await, Ok(1));
        assert_eq!(c.get((), || async { Ok::<u32, String>(2) }).await, Ok(2), "TTL 0: nothing is reused");
    }
}
