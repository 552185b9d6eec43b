//! What subscriptions may hold for their clients, in bytes: each one at
//! most `--subscription-buffer-bytes`, all of them together at most
//! `--total-buffer-bytes` (as Pub/Sub flow-controls by outstanding bytes).
//!
//! A delivery takes its size from both before it goes into a stream's
//! channel, and gives it back as gRPC takes it out (or as the channel goes
//! with it). A subscription that finds no room waits, and its consumer is
//! paused; so memory follows bytes, not counts, whatever the size of the
//! records. A delivery larger than a budget takes all of that budget, so it
//! still goes once the budget is free, alone.
//!
//! Sizes are counted in KiB, rounded up, so that a budget of terabytes
//! still fits the semaphores' counts.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The unit sizes are counted in.
const KIB: usize = 1024;

/// The instance's budget of bytes buffered for clients; cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// All subscriptions together, in KiB.
    total: Arc<Semaphore>,
    /// Its size, in KiB.
    total_kib: u32,
    /// One subscription's size, in KiB.
    each_kib: u32,
    /// Where the bytes held are shown.
    gauge: Gauge,
}

/// One subscription's share of the budget.
#[derive(Debug)]
pub(super) struct StreamBudget {
    /// This subscription, in KiB.
    own: Arc<Semaphore>,
    /// Its size, in KiB.
    own_kib: u32,
    /// The instance's.
    budget: Budget,
}

/// Bytes held of both budgets (a reservation, then one delivery's),
/// given back when it goes.
#[derive(Debug)]
pub(super) struct Held {
    own: OwnedSemaphorePermit,
    total: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by((self.total.num_permits() * KIB) as i64);
    }
}

/// Makes `permit` hold `n`: splits off and gives back what is over, or
/// adds what `acquire(n)` gets less what it holds. Dropped while it waits,
/// it changes nothing.
async fn resize<F, Fut>(permit: &mut OwnedSemaphorePermit, n: usize, acquire: F)
where
    F: FnOnce(usize) -> Fut,
    Fut: Future<Output = OwnedSemaphorePermit>,
{
    let has = permit.num_permits();
    if has > n {
        drop(permit.split(has - n));
    } else if has < n {
        permit.merge(acquire(n - has).await);
    }
}

/// `bytes` in KiB, rounded up, at least 1 and at most `u32::MAX`.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(KIB).max(1)).unwrap_or(u32::MAX)
}

impl Budget {
    /// A budget of `total` bytes for all subscriptions, `each` bytes for any
    /// one of them; the bytes held are shown on `gauge`.
    pub(crate) fn new(total: usize, each: usize, gauge: Gauge) -> Self {
        let total_kib = kib(total);
        Self {
            total: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            each_kib: kib(each).min(total_kib),
            gauge,
        }
    }

    /// A new subscription's share.
    pub(super) fn stream(&self) -> StreamBudget {
        StreamBudget {
            own: Arc::new(Semaphore::new(self.each_kib as usize)),
            own_kib: self.each_kib,
            budget: self.clone(),
        }
    }

    /// Bytes held now by all subscriptions.
    #[cfg(test)]
    fn used(&self) -> usize {
        (self.total_kib as usize - self.total.available_permits()) * KIB
    }

    /// The whole budget in bytes.
    pub(crate) fn size(&self) -> usize {
        self.total_kib as usize * KIB
    }
}

impl StreamBudget {
    /// What a message of `bytes` takes of this subscription's budget and
    /// of the instance's, in KiB.
    fn takes(&self, bytes: usize) -> (usize, usize) {
        let want = kib(bytes);
        (
            want.min(self.own_kib) as usize,
            want.min(self.budget.total_kib) as usize,
        )
    }

    /// What `held` lacks of what a message of `bytes` takes, in KiB: of
    /// this subscription's budget and of the instance's.
    fn lacks(&self, held: Option<&Held>, bytes: usize) -> (usize, usize) {
        let (own, total) = self.takes(bytes);
        let has = held.map_or((0, 0), |h| (h.own.num_permits(), h.total.num_permits()));
        (own.saturating_sub(has.0), total.saturating_sub(has.1))
    }

    /// Whether `held` holds at least what a message of `bytes` takes.
    pub(super) fn covers(&self, held: Option<&Held>, bytes: usize) -> bool {
        held.is_some() && self.lacks(held, bytes) == (0, 0)
    }

    /// Whether `held` holds just what a message of `bytes` takes.
    pub(super) fn fits(&self, held: Option<&Held>, bytes: usize) -> bool {
        held.is_some_and(|h| (h.own.num_permits(), h.total.num_permits()) == self.takes(bytes))
    }

    /// Whether what `held` lacks for a message of `bytes` is free now, in
    /// both budgets.
    pub(super) fn has_room(&self, held: Option<&Held>, bytes: usize) -> bool {
        let (own, total) = self.lacks(held, bytes);
        self.own.available_permits() >= own && self.budget.total.available_permits() >= total
    }

    /// Waits for room for a message of `bytes`, in this subscription's
    /// budget, then in the instance's.
    #[cfg(test)]
    pub(super) async fn hold(&self, bytes: usize) -> Held {
        let mut held = None;
        self.fit(&mut held, bytes).await;
        held.expect("fit leaves a hold")
    }

    /// Makes `held` (a new hold when there is none) hold just what a message
    /// of `bytes` takes: gives back what is over at once, waits for what is
    /// missing, first of this subscription's budget, then of the instance's.
    /// A wait that is dropped keeps what it took so far, and frees it
    /// when `held` goes.
    pub(super) async fn fit(&self, held: &mut Option<Held>, bytes: usize) {
        let (own, total) = self.takes(bytes);
        if held.is_none() {
            *held = Some(Held {
                own: self.acquire(&self.own, 0).await,
                total: self.acquire(&self.budget.total, 0).await,
                gauge: self.budget.gauge.clone(),
            });
        }
        let Some(held) = held.as_mut() else { return };
        resize(&mut held.own, own, |n| self.acquire(&self.own, n)).await;
        let before = held.total.num_permits();
        resize(&mut held.total, total, |n| {
            self.acquire(&self.budget.total, n)
        })
        .await;
        held.gauge
            .inc_by((held.total.num_permits() as i64 - before as i64) * KIB as i64);
    }

    /// Fits `held` to a message of `bytes` as [`StreamBudget::fit`] does, if
    /// that needs no wait; whether it did.
    pub(super) fn try_fit(&self, held: &mut Option<Held>, bytes: usize) -> bool {
        if !self.has_room(held.as_ref(), bytes) {
            return false;
        }
        let mut fitted = std::pin::pin!(self.fit(held, bytes));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        // With room for all of it, nothing waits (the semaphores are fair:
        // a queue of waiters ahead can still make it wait, and the attempt
        // is then dropped, changing nothing).
        fitted.as_mut().poll(&mut context).is_ready()
    }

    /// `n` permits of `semaphore`, once they are free.
    async fn acquire(&self, semaphore: &Arc<Semaphore>, n: usize) -> OwnedSemaphorePermit {
        // Neither semaphore is ever closed, and no count is above its size.
        semaphore
            .clone()
            .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .await
            .expect("the budget is never closed")
    }

    /// Bytes this subscription holds now.
    pub(super) fn used(&self) -> usize {
        (self.own_kib as usize - self.own.available_permits()) * KIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn deliveries_hold_bytes_until_they_go() {
        let budget = Budget::new(8 * KIB, 4 * KIB, Gauge::default());
        let stream = budget.stream();
        let first = stream.hold(3 * KIB).await;
        assert_eq!((stream.used(), budget.used()), (3 * KIB, 3 * KIB));
        assert_eq!(budget.gauge.get(), 3 * KIB as i64);
        assert!(stream.has_room(None, KIB));
        assert!(
            !stream.has_room(None, 2 * KIB),
            "the stream's 4 KiB are nearly taken"
        );
        assert!(
            budget.stream().has_room(None, 2 * KIB),
            "the instance has room"
        );
        drop(first);
        assert_eq!((stream.used(), budget.used()), (0, 0));
        assert_eq!(budget.gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_delivery_larger_than_a_budget_goes_alone() {
        let budget = Budget::new(8 * KIB, 4 * KIB, Gauge::default());
        let stream = budget.stream();
        assert!(stream.has_room(None, 100 * KIB));
        let big = stream.hold(100 * KIB).await;
        assert_eq!(budget.gauge.get(), 8 * KIB as i64, "all of the instance's");
        assert_eq!(stream.used(), 4 * KIB, "it takes the whole stream budget");
        assert!(!stream.has_room(None, 1));
        drop(big);
        assert!(stream.has_room(None, 100 * KIB));
    }

    #[tokio::test]
    async fn the_instance_budget_bounds_all_streams_together() {
        let budget = Budget::new(8 * KIB, 6 * KIB, Gauge::default());
        let (one, two) = (budget.stream(), budget.stream());
        let held = one.hold(6 * KIB).await;
        assert!(two.has_room(None, 2 * KIB));
        assert!(!two.has_room(None, 3 * KIB), "only 2 KiB of the 8 are left");
        let waiting = tokio::spawn(async move { two.hold(3 * KIB).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        let _held = waiting.await.unwrap();
        assert_eq!(budget.used(), 3 * KIB);
    }

    #[tokio::test]
    async fn a_reservation_becomes_just_what_the_delivery_takes() {
        let budget = Budget::new(16 * KIB, 8 * KIB, Gauge::default());
        let stream = budget.stream();
        let mut held = None;
        stream.fit(&mut held, 4 * KIB).await;
        assert!(stream.fits(held.as_ref(), 4 * KIB));
        stream.fit(&mut held, 1).await;
        assert_eq!(
            (stream.used(), budget.used()),
            (KIB, KIB),
            "the rest went back"
        );
        assert!(stream.has_room(held.as_ref(), 8 * KIB));
        stream.fit(&mut held, 6 * KIB).await;
        assert_eq!((stream.used(), budget.used()), (6 * KIB, 6 * KIB));
        assert_eq!(budget.gauge.get(), 6 * KIB as i64);
        drop(held);
        assert_eq!(
            (stream.used(), budget.used(), budget.gauge.get()),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_wait_dropped_takes_nothing_of_the_instance() {
        let budget = Budget::new(8 * KIB, 8 * KIB, Gauge::default());
        let (one, two) = (budget.stream(), budget.stream());
        let _taken = one.hold(6 * KIB).await;
        let mut held = None;
        two.fit(&mut held, KIB).await;
        let wait = tokio::time::timeout(Duration::from_millis(10), two.fit(&mut held, 4 * KIB));
        assert!(wait.await.is_err(), "4 KiB are not free");
        assert_eq!(budget.used(), 7 * KIB, "the instance's budget is as it was");
        two.fit(&mut held, KIB).await;
        assert!(two.fits(held.as_ref(), KIB));
        assert!(!two.try_fit(&mut held, 4 * KIB));
        assert!(two.try_fit(&mut held, 2 * KIB));
        assert!(two.fits(held.as_ref(), 2 * KIB));
    }

    #[test]
    fn sizes_round_up_to_whole_kib() {
        assert_eq!((kib(0), kib(1), kib(1024), kib(1025)), (1, 1, 1, 2));
        assert_eq!(kib(usize::MAX), u32::MAX);
    }
}
