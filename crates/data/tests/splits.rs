//! Validation hold-out and the `source` option.

use vaelab_data::DataSpec;

fn spec(yaml: &str) -> DataSpec {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn validation_is_a_seeded_disjoint_hold_out_of_training() {
    let s = spec("{kind: dsprites, image_size: 32, n_train: 3000, n_test: 500, validation: 400}");
    let a = vaelab_data::load(&s, 1).unwrap();
    assert_eq!((a.train.n, a.val.n, a.test.n), (2600, 400, 500));
    // The same seed gives the same split; another seed another one.
    let b = vaelab_data::load(&s, 1).unwrap();
    assert_eq!(a.val.factors, b.val.factors);
    assert_eq!(a.val.x, b.val.x);
    let c = vaelab_data::load(&s, 2).unwrap();
    assert_ne!(a.val.factors, c.val.factors);
    // Disjoint: no factor combination appears in both training and validation.
    let rows = |f: &Vec<u32>| f.chunks(5).map(|r| r.to_vec()).collect::<std::collections::HashSet<_>>();
    let (tr, va, te) = (rows(a.train.factors.as_ref().unwrap()), rows(a.val.factors.as_ref().unwrap()), rows(a.test.factors.as_ref().unwrap()));
    assert_eq!(va.len(), 400);
    assert!(tr.is_disjoint(&va) && va.is_disjoint(&te) && tr.is_disjoint(&te));
    // Without `validation` there is no validation split and training keeps everything.
    let d = vaelab_data::load(&spec("{kind: ring8, n_train: 1000, n_test: 10}"), 0).unwrap();
    assert_eq!((d.train.n, d.val.n), (1000, 0));
}

#[test]
fn holding_out_everything_is_an_error() {
    let e = vaelab_data::load(&spec("{kind: ring8, n_train: 100, n_test: 10, validation: 100}"), 0).unwrap_err();
    assert!(e.to_string().contains("data.validation"), "{e}");
}

#[test]
fn hub_source_is_explained_when_not_built_in() {
    let s = spec("{kind: mnist, source: hub}");
    if cfg!(feature = "hub") {
        return; // would download; never in tests
    }
    let e = vaelab_data::load(&s, 0).unwrap_err();
    assert!(format!("{e:#}").contains("`hub` feature"), "{e:#}");
    let e = spec("{kind: ring8, source: hub}").validate().unwrap_err();
    assert!(e.to_string().contains("data.source"), "{e}");
}

#[test]
fn toy_scale_divides_points_modes_and_std_alike() {
    let one = vaelab_data::load(&spec("{kind: grid25, n_train: 500, n_test: 10}"), 3).unwrap();
    let scaled = vaelab_data::load(&spec("{kind: grid25, n_train: 500, n_test: 10, scale: 2.828}"), 3).unwrap();
    // The same draws, divided: every point, mode centre and the std.
    for (a, b) in one.train.x.iter().zip(&scaled.train.x) {
        assert!((a / 2.828 - b).abs() < 1e-6, "{a} / 2.828 != {b}");
    }
    let (m1, m2) = (one.modes.unwrap(), scaled.modes.unwrap());
    assert_eq!(m1.len(), 25);
    assert!((m1[0][0] / 2.828 - m2[0][0]).abs() < 1e-6 && (m1[24][1] / 2.828 - m2[24][1]).abs() < 1e-6);
    assert!((one.mode_std.unwrap() / 2.828 - scaled.mode_std.unwrap()).abs() < 1e-7);
    for bad in ["0", "-1", ".nan"] {
        let s = spec(&format!("{{kind: grid25, scale: {bad}}}"));
        assert!(s.validate().unwrap_err().to_string().contains("data.scale"), "scale {bad} accepted");
    }
}
