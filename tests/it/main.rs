//! The integration tests: one module per area, linked into one test binary (one static link
//! for all of them). `common` holds what they share: the real servers and tools they start
//! (moto, kinesalite, Prometheus), a spec-accurate Firehose sender, and the test `serve`.

mod common;
mod corpus;
mod enrich_ec2;
mod export_otlp;
mod filters;
mod findings;
mod golden;
mod kinesis;
mod kinesis_leases;
mod labels;
mod live_view;
mod no_alloc;
mod prometheus;
mod prop_roundtrip;
mod quirks;
mod replay;
mod serve;
mod serve_moto;
mod serve_state;
mod serve_tls;
mod static_root;
mod webhook;
mod window_model;
