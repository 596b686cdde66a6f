//! Integration tests: real nodes on 127.0.0.1:0, real files, the real CLI binary.

mod admin;
mod backup;
mod backup_more;
mod batch;
mod batch_client;
mod blocks;
mod browser;
mod cli;
mod client_cli;
mod content;
mod custody;
mod dashboard;
mod dashboard_browser;
mod gateways;
mod handoff;
mod hardening;
mod keep;
mod like;
mod mesh;
mod operate;
mod origins;
mod origins_browser;
mod peers;
mod sim;
mod store;
mod support;
