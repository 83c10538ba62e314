//! Integration tests, compiled as one binary: one module per feature, shared helpers
//! (the loopback feed server) in `helpers`, the loopback SMTP server in `smtp_server`.

mod alerts;
mod backends;
mod binary;
mod cli;
mod daemon;
mod digests;
mod feeds;
mod health;
mod helpers;
mod identity;
mod limits;
mod link_quality;
mod mail;
mod outbox_daemon;
mod pipeline;
mod review;
mod scheduler;
mod smtp_server;
mod tallies;
mod undelivered;
