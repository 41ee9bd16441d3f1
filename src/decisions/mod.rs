//! Decisions: pure functions from what a reconcile observed to what should be. No client, no clock
//! (the time is an input), no I/O: the controllers observe, call these, and carry out the result.
//!
//! - [`autoscale`]: a DaskAutoscaler's replicas from the scheduler's adaptive target (clamped,
//!   without flapping), and which workers a scale-down deletes;
//! - [`conditions`]: `status.conditions` of the four kinds, with transition times that move only on
//!   a transition;
//! - [`job`]: a DaskJob's life (attempts, deadlines, suspension, clean-up) as one function,
//!   [`job::decide`].

pub mod autoscale;
pub mod conditions;
pub mod job;
