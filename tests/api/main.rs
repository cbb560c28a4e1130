#![allow(clippy::unwrap_used, clippy::expect_used)]

//! One integration binary: every test spawns the real app against real services.

mod account;
mod admin;
mod caption;
mod cli;
mod csrf_and_access;
mod database_outage;
mod fakes;
mod hardening;
mod health;
mod helpers;
mod images;
mod login;
mod migrations;
mod near_cache;
mod platforms;
mod redis_resilience;
mod review;
mod runs;
mod services;
mod watching;
