//! The readiness latch: set once the listeners serve, cleared when shutdown begins.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// Shared readiness flag. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the gateway ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the gateway is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
