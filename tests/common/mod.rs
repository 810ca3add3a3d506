//! Helpers shared by the integration tests, by concern: [`process`] (the real binary and
//! other processes), [`http`] (a real HTTP client, the API in-process), [`kafka`] (the real
//! broker, kcat, spare brokers), [`cluster`] (the three-broker SASL_SSL cluster), [`data`]
//! (sample data and config files), [`python`] (the independent Parquet readers), [`delta`]
//! (the independent Delta readers, the local S3) and [`browser`] (headless Chromium). Every
//! helper is also re-exported here, so tests call `common::name` whichever file holds it.
//!
//! Every test binary compiles all of this and uses its own subset, so an item one binary does
//! not use is not dead code; hence the allow, which cannot be narrower without giving up the
//! shared `common::name` paths. (Each item is used by at least one test file.)
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod data;
pub mod delta;
pub mod http;
pub mod kafka;
pub mod process;
pub mod python;

// A binary that uses nothing of one file would warn of its unused re-export.
#[allow(unused_imports)]
pub use {browser::*, cluster::*, data::*, delta::*, http::*, kafka::*, process::*, python::*};

use std::time::Duration;

pub mod raw_http;

/// Every await on the network in a test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
