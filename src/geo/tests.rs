use super::*;
use crate::config::from_toml;
use std::path::Path;

fn geo(text: &str) -> Geo {
    Geo::build(&from_toml(text, Path::new("t.toml")).unwrap()).unwrap()
}

#[test]
fn try_orders_put_fallbacks_before_the_nearest_and_names_last() {
    let g = geo("[regions.fra]\nlocation = [50.1, 8.7]\nfallback = [\"syd\"]\n[regions.ams]\nlocation = [52.4, 4.9]\n\
         [regions.syd]\nlocation = [-33.9, 151.2]\n[regions.iad]\nlocation = [39.0, -77.5]\n[regions.mars]\n");
    let names = |r: &str| g.order(g.id(r).unwrap()).iter().map(|&i| g.name(i).to_string()).collect::<Vec<_>>();
    assert_eq!(names("fra"), ["fra", "syd", "ams", "iad", "mars"]);
    assert_eq!(names("mars"), ["mars", "ams", "fra", "iad", "syd"], "no location: by name");
}

#[test]
fn locate_uses_networks_then_the_default_region() {
    let g = geo(
        "[geo]\ndefault_region = \"eu\"\n[regions.eu]\nnetworks = [\"10.1.0.0/16\"]\n[regions.us]\nnetworks = [\"10.0.0.0/8\"]\n",
    );
    let at = |a: &str| g.locate(a.parse().unwrap()).map(|p| (g.name(p.region).to_string(), p.decided, p.scope));
    assert_eq!(at("10.1.2.3"), Some(("eu".into(), Decided::Network(16), 16)));
    assert_eq!(at("10.2.2.3"), Some(("us".into(), Decided::Network(8), 15)));
    assert_eq!(at("192.0.2.1"), Some(("eu".into(), Decided::Default, 1)));
    assert_eq!(at("2001:db8::1"), Some(("eu".into(), Decided::Default, 0)));
}

#[test]
fn a_missing_database_is_an_error_at_its_key() {
    let config = from_toml("[geo]\nmmdb = \"nope.mmdb\"\n", Path::new("/etc/c.toml")).unwrap();
    let e = Geo::build(&config).unwrap_err().0;
    assert_eq!((e[0].line, e[0].key.as_str()), (2, "geo.mmdb"), "{}", e[0]);
    assert!(e[0].message.contains("/etc/nope.mmdb"), "{}", e[0]);
}

#[test]
fn great_circle_distances() {
    let fra_ams = distance((50.1, 8.7), (52.4, 4.9));
    let fra_iad = distance((50.1, 8.7), (39.0, -77.5));
    assert!(fra_ams < fra_iad);
    assert!((distance((0.0, 0.0), (0.0, 180.0)) - std::f64::consts::PI).abs() < 1e-9);
}
