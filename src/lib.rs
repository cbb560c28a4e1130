//! fedialt: alt text for the images you already posted to the fediverse.

pub mod auth;
pub mod cache;
pub mod captioning;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod data_dir;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod memo;
pub mod platforms;
pub mod routes;
pub mod services;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod web;
