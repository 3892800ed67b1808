//! Who may ask, in pieces: the sign-in throttle.

use tessera_node::access::throttle::{address_key, Throttle};

#[test]
fn parallel_attempts_are_counted_before_they_are_checked() {
    let throttle = Throttle::default();
    let keys = [("user:alice".to_string(), 5)];
    // Five attempts start together (none has failed yet): the sixth must wait.
    for _ in 0..5 {
        assert!(throttle.begin(&keys).is_ok());
    }
    assert!(throttle.begin(&keys).is_err());
}

#[test]
fn a_success_takes_back_only_its_own_attempt() {
    let throttle = Throttle::default();
    let attacker = [("user:alice".to_string(), 5)];
    for _ in 0..4 {
        throttle.begin(&attacker).unwrap();
    }
    // Alice signs in: her attempt is taken back, the attacker's four stay.
    throttle.begin(&attacker).unwrap();
    throttle.succeeded(&attacker);
    throttle.begin(&attacker).unwrap();
    assert!(throttle.begin(&attacker).is_err());
    assert_eq!(throttle.take_turned_away("user:alice"), 1);
}

#[test]
fn ipv6_addresses_of_one_site_share_a_key() {
    let a = "[2001:db8:1:2:aaaa::1]:5000".parse().ok();
    let b = "[2001:db8:1:2:bbbb::9]:6000".parse().ok();
    assert_eq!(address_key(a), address_key(b));
    assert_eq!(address_key("10.0.0.1:1".parse().ok()), "10.0.0.1");
}
