//! Integration tests, compiled as one binary: one module per feature, shared helpers
//! (the loopback feed server) in `helpers`, the loopback SMTP server in `smtp_server`.

mod alerts;
mod backends;
mod binary;
mod digests;
mod feeds;
mod helpers;
mod identity;
mod link_quality;
mod mail;
mod pipeline;
mod smtp_server;
