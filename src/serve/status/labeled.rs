//! The instruments whose attributes come from the data, which `serve::telemetry` registers
//! itself (the sections' instruments are declared with their fields).

use super::InstrumentKind;

/// An instrument whose attributes come from the data, registered by `serve::telemetry`.
#[derive(Debug, Clone, Copy)]
pub struct LabeledInstrument {
    pub name: &'static str,
    pub kind: InstrumentKind,
    pub unit: &'static str,
    pub attributes: &'static str,
    pub description: &'static str,
    /// Where the status shows the same values, if it does.
    pub status: Option<&'static str>,
}

/// The instruments whose attributes come from the data, the watermark's (no point before the
/// first record or once it is final), and the process's own.
pub const LABELED_INSTRUMENTS: &[LabeledInstrument] = &[
    LabeledInstrument {
        name: "vpcflowd.ingest.requests",
        kind: InstrumentKind::Counter,
        unit: "{request}",
        attributes: "http.response.status_code",
        description: "Ingest responses by HTTP status code",
        status: Some("ingest.responses"),
    },
    LabeledInstrument {
        name: "vpcflowd.ingest.rejects",
        kind: InstrumentKind::Counter,
        unit: "{record}",
        attributes: "vpcflowd.reject.reason",
        description: "Rejected input by reason",
        status: Some("rejects"),
    },
    LabeledInstrument {
        name: "vpcflowd.engine.watermark",
        kind: InstrumentKind::Gauge,
        unit: "s",
        attributes: "",
        description: "The watermark (Unix time): windows ending at or before it are closed",
        status: Some("engine.watermark"),
    },
    LabeledInstrument {
        name: "vpcflowd.engine.watermark.lag",
        kind: InstrumentKind::Gauge,
        unit: "s",
        attributes: "",
        description: "Wall clock minus the watermark: how far behind real time results are",
        status: None,
    },
    LabeledInstrument {
        name: "process.memory.usage",
        kind: InstrumentKind::Gauge,
        unit: "By",
        attributes: "",
        description: "Resident set size of this process",
        status: None,
    },
    LabeledInstrument {
        name: "vpcflowd.kinesis.shard.lag",
        kind: InstrumentKind::Gauge,
        unit: "ms",
        attributes: "aws.kinesis.stream_name, vpcflowd.kinesis.shard_id",
        description: "MillisBehindLatest of each Kinesis shard being read",
        status: Some("kinesis.shards[].lag_ms"),
    },
];
