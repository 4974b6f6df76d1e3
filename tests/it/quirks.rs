//! Every parsing hazard `shared/reference/flowlogs-and-firehose.md` lists (section 1.5 and the
//! later fields), through the library and through `vpcflowd parse`.

use crate::common;

use std::net::IpAddr;

use crate::common::{corpus_file, json_lines, vpcflowd};
use serde_json::{Value, json};
use vpcflowd::decode::{
    Action, EncryptionStatus, Field, FlowDirection, Layout, LayoutSet, LogStatus, RejectReason,
    ResourceType, TrafficPath, parse_line,
};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn alphabetical_s3_header_with_version_second_to_last() {
    // The corpus's all-v5 29-field record, rewritten in alphabetical field order under an S3
    // header, as real S3 data has arrived (version ends up second to last).
    let (format, body) = corpus_file("custom-v5-traffic-path.log");
    let layout = Layout::parse(&format).unwrap();
    let tokens: Vec<&str> = body[1].split(' ').collect();
    let mut pairs: Vec<(&str, &str)> =
        layout.fields().iter().map(|f| f.name()).zip(tokens.iter().copied()).collect();
    pairs.sort();
    assert_eq!(pairs[pairs.len() - 2].0, "version");
    let header: Vec<_> = pairs.iter().map(|p| p.0).collect();
    let record: Vec<_> = pairs.iter().map(|p| p.1).collect();
    let file = format!("{}\n{}\n", header.join(" "), record.join(" "));

    // No --format given: the header alone must be enough.
    let out = vpcflowd(&["parse"], file.as_bytes());
    assert!(out.status.success());
    let got = json_lines(&out.stdout);
    let direct = vpcflowd(&["parse", "--format", &format], format!("{}\n", body[1]).as_bytes());
    assert_eq!(got, json_lines(&direct.stdout));
    assert_eq!(got[0]["version"], 5);
    assert_eq!(got[0]["traffic-path"], 8);
    assert_eq!(got[0]["flow-direction"], "egress");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 header line(s); 0 rejected"), "{stderr}");
}

#[test]
fn millisecond_timestamps_are_kept_raw() {
    // flowlogs-reader's test record: ms values contrary to the docs.
    let set = LayoutSet::default();
    let line =
        "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1512564058000 1512564059000 - SKIPDATA";
    let r = parse_line(&set, line.as_bytes()).unwrap().record;
    assert_eq!((r.start, r.end), (Some(1512564058000), Some(1512564059000)));
    assert_eq!(r.log_status, Some(LogStatus::SkipData));
}

#[test]
fn nat_gateway_format_without_version_start_end_action_or_status() {
    // The documented NAT example format and records (minus the page's `#Traffic from …` notes).
    let format = "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr";
    let lines = "\
- eni-1235b8ca123456789 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5
- eni-1235b8ca123456789 10.0.0.220 203.0.113.5 10.0.0.220 203.0.113.5
- eni-1235b8ca123456789 203.0.113.5 10.0.0.220 203.0.113.5 10.0.0.220
- eni-1235b8ca123456789 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5
i-01234567890123456 eni-1111aaaa2222bbbb3 10.0.1.5 203.0.113.5 10.0.1.5 203.0.113.5
i-01234567890123456 eni-1111aaaa2222bbbb3 203.0.113.5 10.0.1.5 203.0.113.5 10.0.1.5
";
    let out = vpcflowd(&["parse", "--format", format], lines.as_bytes());
    let got = json_lines(&out.stdout);
    assert_eq!(got.len(), 6);
    assert_eq!(
        got[0],
        json!({"instance-id": null, "interface-id": "eni-1235b8ca123456789", "srcaddr": "10.0.1.5",
               "dstaddr": "10.0.0.220", "pkt-srcaddr": "10.0.1.5", "pkt-dstaddr": "203.0.113.5"})
    );
    let set = LayoutSet::from_formats(&[format]).unwrap();
    let r = parse_line(&set, lines.lines().nth(4).unwrap().as_bytes()).unwrap().record;
    assert_eq!(r.instance_id, Some("i-01234567890123456"));
    assert_eq!((r.version, r.start, r.action, r.log_status), (None, None, None, None));
}

#[test]
fn double_space_in_the_documented_tcp_flags_example() {
    let (format, body) = corpus_file("custom-v3-tcp-flags.log");
    let set = LayoutSet::from_formats(&[format.as_str()]).unwrap();
    let single = &body[7];
    let double = single.replacen(" 10.0.0.62 ", "  10.0.0.62 ", 1);
    assert_ne!(&double, single);
    let a = parse_line(&set, single.as_bytes()).unwrap().record;
    let b = parse_line(&set, double.as_bytes()).unwrap().record;
    assert_eq!(a, b);
    assert_eq!(b.tcp_flags, Some(19));
}

#[test]
fn ecs_fields_of_v7() {
    let format = "${version} ${interface-id} ${srcaddr} ${dstaddr} ${ecs-cluster-arn} \
        ${ecs-cluster-name} ${ecs-container-instance-arn} ${ecs-container-instance-id} \
        ${ecs-container-id} ${ecs-second-container-id} ${ecs-service-name} \
        ${ecs-task-definition-arn} ${ecs-task-arn} ${ecs-task-id} ${action} ${log-status}";
    let line = "7 eni-0123456789abcdef0 10.0.0.10 10.0.1.20 \
        arn:aws:ecs:us-east-1:123456789012:cluster/web web \
        arn:aws:ecs:us-east-1:123456789012:container-instance/web/0a1b2c3d 0a1b2c3d \
        3f2e1d0c-aaaa - web-svc arn:aws:ecs:us-east-1:123456789012:task-definition/web:7 \
        arn:aws:ecs:us-east-1:123456789012:task/web/9f8e7d6c 9f8e7d6c ACCEPT OK";
    let set = LayoutSet::from_formats(&[format]).unwrap();
    assert_eq!(set.layouts()[0].version(), 7);
    let r = parse_line(&set, line.as_bytes()).unwrap().record;
    assert_eq!(r.ecs_cluster_name, Some("web"));
    assert_eq!(r.ecs_second_container_id, None);
    assert_eq!(r.ecs_task_id, Some("9f8e7d6c"));
    assert_eq!(
        r.ecs_task_definition_arn,
        Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:7")
    );
}

#[test]
fn reject_reason_of_v8_and_later_fields() {
    let format = "version interface-id srcaddr dstaddr action reject-reason resource-id encryption-status log-status";
    let set = LayoutSet::from_formats(&[format]).unwrap();
    let bpa = "8 eni-0123456789abcdef0 198.51.100.7 10.0.0.5 REJECT BPA - - OK";
    let r = parse_line(&set, bpa.as_bytes()).unwrap().record;
    assert_eq!((r.action, r.reject_reason), (Some(Action::Reject), Some("BPA")));
    // v9 regional NAT: no interface, a resource id; v10 encryption status.
    let nat = "10 - 10.0.0.5 203.0.113.9 ACCEPT - nat-0a1b2c3d4e5f60718 1 OK";
    let r = parse_line(&set, nat.as_bytes()).unwrap().record;
    assert_eq!(r.interface_id, None);
    assert_eq!(r.resource_id, Some("nat-0a1b2c3d4e5f60718"));
    assert_eq!(r.encryption_status, Some(EncryptionStatus::Nitro));
    let bad = "10 - 10.0.0.5 203.0.113.9 ACCEPT - - 4 OK";
    assert_eq!(
        parse_line(&set, bad.as_bytes()).unwrap_err().reason,
        RejectReason::InvalidEnumValue
    );
}

#[test]
fn account_id_is_a_string_with_leading_zeros_or_unknown() {
    let set = LayoutSet::default();
    for account in ["000123456789", "unknown"] {
        let line = format!("2 {account} eni-1 - - - - - - - 1 2 - NODATA");
        let out = vpcflowd(&["parse"], line.as_bytes());
        assert_eq!(json_lines(&out.stdout)[0]["account-id"], account);
        let r = parse_line(&set, line.as_bytes()).unwrap().record;
        assert_eq!(r.account_id, Some(account));
    }
}

const TGW_LINE: &str = "6 TransitGatewayAttachment 123456789012 tgw-0123456789abcdef0 \
    tgw-attach-0123456789abcdef0 123456789012 210987654321 vpc-0a1b2c3d4e5f6a7b8 \
    vpc-0b1c2d3e4f5a6b7c8 subnet-0a1b2c3d4e5f6a7b8 subnet-0b1c2d3e4f5a6b7c8 eni-0a1b2c3d4e5f6a7b8 \
    eni-0b1c2d3e4f5a6b7c8 use1-az1 use1-az2 tgw-attach-0fedcba987654321f 10.0.1.10 10.1.2.20 \
    49152 443 6 12 4096 1700000000 1700000060 OK IPv4 0 1 0 2 3 us-east-1 egress - S3";

#[test]
fn transit_gateway_default_records_parse_without_a_format() {
    let set = LayoutSet::default();
    let p = parse_line(&set, TGW_LINE.as_bytes()).unwrap();
    assert_eq!(p.layout.len(), 36);
    let r = p.record;
    assert_eq!(r.version, Some(6));
    assert_eq!(r.resource_type, Some(ResourceType::TransitGatewayAttachment));
    assert_eq!(r.tgw_dst_vpc_account_id, Some("210987654321"));
    assert_eq!(r.tgw_src_eni, Some("eni-0a1b2c3d4e5f6a7b8"));
    assert_eq!(r.srcaddr, ip("10.0.1.10"));
    assert_eq!((r.packets_lost_blackhole, r.packets_lost_ttl_expired), (Some(1), Some(2)));
    assert_eq!(r.flow_direction, Some(FlowDirection::Egress));
    assert_eq!(r.pkt_dst_aws_service, Some("S3"));
    // No action and no interface-id in this family.
    assert_eq!((r.action, r.interface_id), (None, None));
    let out = vpcflowd(&["parse"], TGW_LINE.as_bytes());
    let got = &json_lines(&out.stdout)[0];
    assert_eq!(got.as_object().unwrap().len(), 36);
    assert_eq!(got["packets-lost-ttl-expired"], 2);
    assert_eq!(got["resource-type"], "TransitGatewayAttachment");
}

#[test]
fn ipv6_addresses_are_printed_as_written() {
    let line = "2 123456789010 eni-1 2001:DB8:0:0::0005 2001:db8::1 443 51000 6 1 60 1 2 ACCEPT OK";
    let out = vpcflowd(&["parse"], line.as_bytes());
    let got = &json_lines(&out.stdout)[0];
    assert_eq!(got["srcaddr"], "2001:DB8:0:0::0005");
    let r = parse_line(&LayoutSet::default(), line.as_bytes()).unwrap().record;
    assert_eq!(r.srcaddr, ip("2001:db8::5"));
}

#[test]
fn traffic_path_codes_are_an_enum() {
    let set = LayoutSet::from_formats(&["interface-id traffic-path"]).unwrap();
    let r = parse_line(&set, b"eni-1 7").unwrap().record;
    assert_eq!(r.traffic_path, Some(TrafficPath::GatewayVpcEndpoint));
    assert_eq!(parse_line(&set, b"eni-1 9").unwrap_err().reason, RejectReason::InvalidEnumValue);
    assert_eq!(parse_line(&set, b"eni-1 -").unwrap().record.traffic_path, None);
}

#[test]
fn every_field_can_be_absent() {
    let all = Field::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(" ");
    let set = LayoutSet::from_formats(&[all.as_str()]).unwrap();
    let dashes = vec!["-"; Field::ALL.len()].join(" ");
    let p = parse_line(&set, dashes.as_bytes()).unwrap();
    assert_eq!(p.record, Default::default());
    for &f in Field::ALL {
        assert_eq!(p.record.get(f), None, "{f}");
    }
}

/// Each kind of malformed line, through the CLI: `FILE:LINE: reason` on stderr, a summary, exit 0.
#[test]
fn malformed_lines_are_reported_with_file_line_and_reason() {
    let (format, body) = corpus_file("default-v2.log");
    let good = &body[0];
    let bad = [
        good.replacen(' ', "\t", 1),
        good.replace(" 20641 ", " +20641 "),
        good.replace(" 4249 ", " 4249.5 "),
        good.replace(" 4249 ", " 4e3 "),
        good.replace(" 4249 ", " 4,249 "),
        good.replace(" 20641 ", " 65536 "),
        good.replace(" ACCEPT ", " Accept "),
        good.replace(" 172.31.16.139 ", " 172.31.16 "),
        good.replace(" OK", ""),
        format!("{good} OK"),
    ];
    let mut input = String::new();
    for b in &bad {
        input.push_str(good);
        input.push('\n');
        input.push_str(b);
        input.push('\n');
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("bad.log");
    std::fs::write(&path, &input).unwrap();
    let out = vpcflowd(&["parse", "--format", &format, path.to_str().unwrap()], b"");
    assert!(out.status.success(), "rejected lines still exit 0");
    assert_eq!(json_lines(&out.stdout).len(), bad.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    let p = path.display();
    let expected = [
        format!("{p}:2: control character 0x09 at byte 1 (fields are separated by spaces only)"),
        format!(
            "{p}:4: field 6 (srcport): `+20641` is not valid: expected an integer from 0 to 65535"
        ),
        format!(
            "{p}:6: field 10 (bytes): `4249.5` is not valid: expected an integer from 0 to 18446744073709551615"
        ),
        format!(
            "{p}:8: field 10 (bytes): `4e3` is not valid: expected an integer from 0 to 18446744073709551615"
        ),
        format!(
            "{p}:10: field 10 (bytes): `4,249` is not valid: expected an integer from 0 to 18446744073709551615"
        ),
        format!(
            "{p}:12: field 6 (srcport): `65536` is out of range: expected an integer from 0 to 65535"
        ),
        format!("{p}:14: field 13 (action): `Accept` is not valid: expected one of ACCEPT, REJECT"),
        format!(
            "{p}:16: field 4 (srcaddr): `172.31.16` is not valid: expected an IPv4 or IPv6 address"
        ),
        format!("{p}:18: expected 14 fields, found 13"),
        format!("{p}:20: expected 14 fields, found 15"),
    ];
    assert_eq!(&lines[..expected.len()], &expected[..]);
    assert_eq!(
        lines[expected.len()],
        "vpcflowd parse: 10 records from 20 lines in 1 input(s); 0 header line(s); 10 rejected \
         (control_character 1, field_count 2, invalid_number 4, number_out_of_range 1, \
         invalid_address 1, invalid_enum_value 1)"
    );
}

#[test]
fn unknown_field_in_a_format_is_a_usage_error_naming_it() {
    let out = vpcflowd(&["parse", "--format", "${version} ${interface_idd}"], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `${interface_idd}`"), "{stderr}");
    let out = vpcflowd(&["parse", "--format", "srcaddr", "--format", "dstaddr"], b"");
    assert_eq!(out.status.code(), Some(2), "two layouts with one field each are ambiguous");
}

#[test]
fn io_errors_exit_1_and_other_inputs_are_still_read() {
    let line = "2 1 eni-1 - - - - - - - 1 2 - NODATA\n";
    let out = vpcflowd(&["parse", "/nonexistent/flows.log", "-"], line.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out.stdout).len(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/flows.log: No such file"), "{stderr}");
}

#[test]
fn gzip_files_wrapped_lines_and_cloudwatch_payload_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, body) = corpus_file("default-v2.log");
    let path = dir.join("flows.log.gz");
    std::fs::write(&path, common::gzip((body.join("\n") + "\n").as_bytes())).unwrap();
    let out = vpcflowd(&["parse", path.to_str().unwrap()], b"");
    assert!(out.status.success());
    assert_eq!(json_lines(&out.stdout).len(), body.len());

    // A file of {"message":…} lines and a CloudWatch payload given as one input line.
    let (_, wrapped) = corpus_file("firehose-direct-wrapped.txt");
    let cwl: Value = serde_json::from_str(
        &std::fs::read_to_string(common::corpus_dir().join("envelopes/cwl-data-message.json"))
            .unwrap(),
    )
    .unwrap();
    let input = format!("{}\n{}\n", wrapped.join("\n"), serde_json::to_string(&cwl).unwrap());
    let out = vpcflowd(&["parse"], input.as_bytes());
    let got = json_lines(&out.stdout);
    assert_eq!(got.len(), wrapped.len() + 3);
    assert_eq!(got[wrapped.len() + 1]["action"], "REJECT");
}
