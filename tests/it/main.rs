//! Integration tests, compiled as one binary: one module per feature, shared helpers
//! (the loopback feed server) in `helpers`.

mod alerts;
mod backends;
mod binary;
mod daemon;
mod feeds;
mod helpers;
mod identity;
mod link_quality;
mod pipeline;
mod scheduler;
