//! The bytes that request bodies may hold in memory at once, across every connection and source:
//! `[server] max_buffered_bytes`.
//!
//! `verify` charges the budget for a body's buffer as the buffer grows with what arrives (never by the
//! declared `Content-Length`), and the request keeps its charge until its answer is ready: the durable
//! commit, which holds the body too, is covered. A request whose next chunk does not fit fails with
//! [`BufferBudgetExhausted`], which `rescue` answers 503 with `Retry-After`, counted as
//! `reason="buffer_budget_exhausted"` and logged. So slow bodies, however many and however large they
//! claim to be, hold at most the budget; the per-connection read buffers (`max_buf_size`, 16 KiB) and
//! `max_connections` bound the rest.
//!
//! The budget is a [`tokio::sync::Semaphore`] with one permit per byte; it lives as long as the process
//! (a reload that changes it is reported `restart_required`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Past `[server] max_buffered_bytes`: bodies in flight already hold the whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request bodies in memory already hold server.max_buffered_bytes")]
pub(crate) struct BufferBudgetExhausted;

/// The shared budget. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BufferBudget {
    bytes: Arc<Semaphore>,
}

impl BufferBudget {
    /// The largest budget a semaphore can count, in bytes (2^61 on 64-bit targets); the config loader
    /// caps `max_buffered_bytes` at it.
    pub(crate) const MAX: usize = Semaphore::MAX_PERMITS;

    /// A budget of `bytes` (at most [`Self::MAX`], which the config loader checks).
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes.min(Self::MAX))),
        }
    }

    /// An empty charge on this budget, for one request's buffer.
    pub(crate) fn charge(&self) -> Charge {
        Charge {
            budget: self.bytes.clone(),
            held: None,
        }
    }

    /// The bytes not held by any request now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// The bytes one request holds; released when it is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Takes `more` bytes from the budget, without waiting: fails if they are not there now.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), BufferBudgetExhausted> {
        if more == 0 {
            return Ok(());
        }
        // A body is at most `max_body_size` and grows by at most twice its size, so `more` fits a u32
        // unless the config allows bodies of 2 GiB or more: those are taken in u32 steps.
        let mut rest = more;
        let mut taken: Option<OwnedSemaphorePermit> = None;
        while rest > 0 {
            let step = rest.min(u32::MAX as usize);
            let permit = match self.budget.clone().try_acquire_many_owned(step as u32) {
                Ok(permit) => permit,
                // Closed never happens (the budget is never closed); either way nothing is taken
                // (`taken`, if any, is given back when it drops).
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                    return Err(BufferBudgetExhausted)
                }
            };
            match &mut taken {
                Some(t) => t.merge(permit),
                None => taken = Some(permit),
            }
            rest -= step;
        }
        match (&mut self.held, taken) {
            (Some(held), Some(taken)) => held.merge(taken),
            (held @ None, taken) => *held = taken,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// The bytes this charge holds.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_take_from_one_budget_and_give_back_when_dropped() {
        let budget = BufferBudget::new(100);
        let mut a = budget.charge();
        a.grow(60).expect("fits");
        a.grow(0).expect("nothing to take");
        let mut b = budget.charge();
        assert_eq!(b.grow(41), Err(BufferBudgetExhausted), "60 + 41 > 100");
        assert_eq!(budget.available(), 40, "a failed grow takes nothing");
        b.grow(40).expect("fits exactly");
        assert_eq!(budget.available(), 0);
        assert_eq!((a.bytes(), b.bytes()), (60, 40));
        drop(a);
        assert_eq!(budget.available(), 60);
        b.grow(60).expect("what a gave back");
        assert_eq!(b.bytes(), 100);
        drop(b);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_charge_larger_than_a_u32_is_taken_in_steps_or_not_at_all() {
        let big = u32::MAX as usize + 10;
        let budget = BufferBudget::new(big + 5);
        let mut a = budget.charge();
        a.grow(big).expect("fits");
        assert_eq!(a.bytes(), big);
        let mut b = budget.charge();
        assert_eq!(b.grow(6), Err(BufferBudgetExhausted));
        drop(a);
        assert_eq!(b.grow(big + 6), Err(BufferBudgetExhausted), "one byte too many");
        assert_eq!(
            budget.available(),
            big + 5,
            "the steps already taken are given back"
        );
    }
}
