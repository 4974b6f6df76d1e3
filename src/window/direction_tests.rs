use super::*;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fields(src: &str, dst: &str) -> RouteFields {
    RouteFields { srcaddr: Some(ip(src)), dstaddr: Some(ip(dst)), ..RouteFields::default() }
}

fn book() -> DirectionBook {
    DirectionBook::new(DirectionSettings::default())
}

#[test]
fn an_address_with_four_peers_is_learned_and_decides_that_record() {
    let mut b = book();
    for (i, peer) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
        let d = b.decide(0, "eni-1", &fields(peer, "172.16.0.1"));
        assert_eq!(d.direction, Direction::Unknown, "record {i}");
        assert_eq!(d.basis, Basis::Inferred);
    }
    let d = b.decide(0, "eni-1", &fields("172.16.0.1", "10.0.0.4"));
    assert_eq!((d.direction, d.local), (Direction::Egress, Some(ip("172.16.0.1"))));
    let d = b.decide(0, "eni-1", &fields("10.0.0.1", "172.16.0.1"));
    assert_eq!((d.direction, d.local), (Direction::Ingress, Some(ip("172.16.0.1"))));
    assert_eq!(b.checkpoint()[0].1.learned(), [ip("172.16.0.1")]);
}

#[test]
fn a_remote_with_one_busy_peer_is_never_learned() {
    let mut b = book();
    for _ in 0..1000 {
        b.decide(0, "eni-1", &fields("10.0.0.9", "172.16.0.1"));
    }
    let d = b.decide(0, "eni-1", &fields("10.0.0.9", "172.16.0.1"));
    assert_eq!(d.direction, Direction::Unknown);
}

#[test]
fn a_second_address_is_learned_after_the_first_and_both_local_is_unknown() {
    let mut b = book();
    for i in 1..=4 {
        b.decide(0, "eni-1", &fields(&format!("10.0.0.{i}"), "172.16.0.1"));
    }
    for i in 1..=4 {
        b.decide(0, "eni-1", &fields(&format!("10.0.1.{i}"), "fd00::1"));
    }
    let d = b.decide(0, "eni-1", &fields("fd00::1", "2001:db8::5"));
    assert_eq!(d.direction, Direction::Egress);
    let d = b.decide(0, "eni-1", &fields("fd00::1", "172.16.0.1"));
    assert_eq!(d.direction, Direction::Unknown, "both endpoints are local");
    // Interfaces learn apart.
    let d = b.decide(1, "eni-2", &fields("10.0.0.1", "172.16.0.1"));
    assert_eq!(d.direction, Direction::Unknown);
}

#[test]
fn flow_direction_wins_and_teaches_the_local_address() {
    let mut b = book();
    let mut f = fields("10.0.0.1", "172.16.0.1");
    f.flow_direction = Some(FlowDirection::Egress);
    let d = b.decide(0, "eni-1", &f);
    assert_eq!(
        (d.direction, d.basis, d.local),
        (Direction::Egress, Basis::FlowDirection, f.srcaddr)
    );
    // The source it named local decides a record without the field.
    let d = b.decide(0, "eni-1", &fields("192.0.2.1", "10.0.0.1"));
    assert_eq!((d.direction, d.basis), (Direction::Ingress, Basis::Inferred));
}

#[test]
fn configured_addresses_and_cidrs_decide_their_interfaces_only() {
    let blocks = vec!["10.1.0.0/16".to_string(), "2001:db8::7".to_string()];
    let locals = LocalAddresses::parse([("eni-1", blocks.as_slice())]).unwrap();
    let mut b = DirectionBook::new(DirectionSettings {
        local_addresses: Arc::new(locals),
        ..DirectionSettings::default()
    });
    let d = b.decide(0, "eni-1", &fields("10.1.200.3", "8.8.8.8"));
    assert_eq!((d.direction, d.basis), (Direction::Egress, Basis::Configured));
    let d = b.decide(0, "eni-1", &fields("2001:db8::9", "2001:db8::7"));
    assert_eq!(d.direction, Direction::Ingress);
    let d = b.decide(0, "eni-1", &fields("10.2.0.1", "8.8.8.8"));
    assert_eq!(d.direction, Direction::Unknown);
    let d = b.decide(1, "eni-2", &fields("10.1.0.1", "8.8.8.8"));
    assert_eq!(d.basis, Basis::Inferred);
}

#[test]
fn bad_blocks_are_named() {
    for bad in ["10.0.0.0/33", "10.0.0.0/+8", "nope", "::/129"] {
        let blocks = vec![bad.to_string()];
        let e = LocalAddresses::parse([("eni-1", blocks.as_slice())]).unwrap_err();
        assert!(e.contains("local_addresses.eni-1") && e.contains(bad), "{e}");
    }
    assert!(LocalAddresses::parse_json("[1]").is_err());
    let ok = LocalAddresses::parse_json(r#"{"eni-1": ["0.0.0.0/0"]}"#).unwrap();
    assert!(ok.get("eni-1").unwrap()[0].contains(&ip("203.0.113.1")));
}

#[test]
fn packet_addresses_are_attributed_and_the_header_one_is_via() {
    // A NAT gateway's ENI (10.0.0.220) forwarding an instance's packet to the internet.
    let mut f = fields("10.0.1.5", "10.0.0.220");
    f.pkt_srcaddr = Some(ip("10.0.1.5"));
    f.pkt_dstaddr = Some(ip("203.0.113.5"));
    f.flow_direction = Some(FlowDirection::Ingress);
    let d = book().decide(0, "eni-nat", &f);
    assert_eq!((d.srcaddr, d.dstaddr, d.via), (f.pkt_srcaddr, f.pkt_dstaddr, None));
    // The reply, sent on to the instance: the remote's packet address differs from the header.
    let mut f = fields("203.0.113.5", "10.0.0.220");
    f.pkt_srcaddr = Some(ip("198.51.100.9"));
    f.flow_direction = Some(FlowDirection::Ingress);
    let d = book().decide(0, "eni-nat", &f);
    assert_eq!((d.srcaddr, d.via), (f.pkt_srcaddr, Some(ip("203.0.113.5"))));
    let header = DirectionSettings { address: AddressMode::Header, ..Default::default() };
    let d = DirectionBook::new(header).decide(0, "eni-nat", &f);
    assert_eq!((d.srcaddr, d.via), (f.srcaddr, None));
}

#[test]
fn off_decides_nothing_and_keeps_header_addresses() {
    let off = DirectionSettings { mode: DirectionMode::Off, ..Default::default() };
    let mut f = fields("10.0.0.1", "10.0.0.2");
    f.flow_direction = Some(FlowDirection::Ingress);
    f.pkt_srcaddr = Some(ip("10.9.9.9"));
    let d = DirectionBook::new(off).decide(0, "eni-1", &f);
    assert_eq!((d.direction, d.basis, d.srcaddr), (Direction::Unknown, Basis::Off, f.srcaddr));
}

#[test]
fn bases_name_one_basis_or_mixed() {
    let mut b = Bases::default();
    assert_eq!((b.name(), b.is_off()), ("off", true));
    b.insert(Basis::Off);
    assert_eq!((b.name(), b.is_off()), ("off", true));
    b.insert(Basis::Inferred);
    assert_eq!((b.name(), b.is_off()), ("mixed", false));
    let mut b = Bases::default();
    b.insert(Basis::Inferred);
    assert_eq!(b.name(), "inferred");
    b.insert(Basis::FlowDirection);
    assert_eq!(b.name(), "mixed");
}

/// The interface's own addresses and a population of remote peers, as a generated interface.
fn traffic() -> impl Strategy<Value = Vec<(u8, u16, bool)>> {
    // (which local address, which remote, whether the record is egress)
    prop::collection::vec((0u8..3, 0u16..400, any::<bool>()), 300..600)
}

proptest! {
    /// On an interface with up to three local addresses talking to many remotes, every learned
    /// address is a local one, a restored book decides as the original, and once an address is
    /// learned each of its records with a remote is decided correctly.
    #[test]
    fn inference_learns_only_local_addresses(records in traffic(), restore_at in 0usize..300) {
        let local = |i: u8| IpAddr::from([172, 16, 0, i + 1]);
        let remote = |i: u16| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let mut b = book();
        let mut restored = None;
        for (k, &(l, r, egress)) in records.iter().enumerate() {
            if k == restore_at {
                restored = Some(DirectionBook::restored(DirectionSettings::default(), b.checkpoint()));
            }
            let (src, dst) = if egress { (local(l), remote(r)) } else { (remote(r), local(l)) };
            let f = RouteFields { srcaddr: Some(src), dstaddr: Some(dst), ..RouteFields::default() };
            let d = b.decide(0, "eni-1", &f);
            if let Some(other) = restored.as_mut() {
                prop_assert_eq!(other.decide(0, "eni-1", &f), d);
            }
            match d.direction {
                Direction::Unknown => {}
                Direction::Egress => prop_assert!(egress),
                Direction::Ingress => prop_assert!(!egress),
            }
        }
        for (_, locals) in b.checkpoint() {
            for a in locals.learned() {
                prop_assert!((0..3).map(local).any(|l| l == *a), "{} is not local", a);
            }
        }
    }
}
