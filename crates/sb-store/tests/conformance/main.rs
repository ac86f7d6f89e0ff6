//! The store conformance suite: one binary, every invariant proved on SQLite (a temporary
//! file, so WAL and the writer thread with group commit are exercised) and on PostgreSQL
//! (a schema of its own per test) when `SWITCHBOARD_TEST_PG_URL` is set.
//!
//! Each test is written once against [`harness::Ctx`] and run by
//! [`harness::for_each_backend`]; time comes from a [`harness::FixedClock`] that tests move
//! by hand, so nothing sleeps.

mod harness;

mod access;
mod audit;
mod canned;
mod inbox;
mod inventory;
mod jobs;
mod orders;
mod profiles;
mod regressions;
mod schema;
mod sql;
mod timers;
