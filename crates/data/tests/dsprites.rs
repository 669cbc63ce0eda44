//! Procedural dSprites: deterministic, every factor reachable, shapes placed and sized as the factors say.

use vaelab_data::dsprites::{combination_factors, combination_index, render, FACTOR_SIZES, NUM_COMBINATIONS};

/// (pixel count, centroid x, centroid y) of a binary image.
fn moments(img: &[f32], size: usize) -> (f32, f32, f32) {
    let (mut m, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (i, &v) in img.iter().enumerate() {
        m += v;
        sx += v * ((i % size) as f32 + 0.5);
        sy += v * ((i / size) as f32 + 0.5);
    }
    (m, sx / m, sy / m)
}

#[test]
fn same_factors_same_image() {
    for flat in [0, 12_345, NUM_COMBINATIONS - 1] {
        let f = combination_factors(flat);
        assert_eq!(combination_index(f), flat);
        assert_eq!(render(f, 64), render(f, 64));
    }
}

#[test]
fn every_factor_value_is_reachable_and_visible() {
    for (k, &n) in FACTOR_SIZES.iter().enumerate() {
        for v in 0..n as u32 {
            let mut f = [1, 2, 3, 4, 5];
            f[k] = v;
            let img = render(f, 64);
            assert!(img.iter().sum::<f32>() > 20.0, "factor {k}={v} renders a visible shape");
        }
    }
}

#[test]
fn position_factors_move_the_centroid_linearly() {
    let size = 64;
    // Square, scale 1, orientation 0: the centroid is the shape centre, 0.2·64 + 0.6·64·pos.
    for px in [0u32, 10, 31] {
        for py in [0u32, 20, 31] {
            let (_, cx, cy) = moments(&render([0, 5, 0, px, py], size), size);
            let want = |p: u32| (0.2 + 0.6 * p as f32 / 31.0) * size as f32;
            assert!((cx - want(px)).abs() < 0.6, "x centroid {cx} vs {}", want(px));
            assert!((cy - want(py)).abs() < 0.6, "y centroid {cy} vs {}", want(py));
        }
    }
}

#[test]
fn scale_factor_scales_the_area_quadratically() {
    let area = |s: u32| render([0, s, 0, 16, 16], 64).iter().sum::<f32>();
    let (small, big) = (area(0), area(5));
    // Scale 0.5 vs 1.0: a square's area ratio is 4 (up to pixel rounding).
    let ratio = big / small;
    assert!((ratio - 4.0).abs() < 0.5, "area ratio {ratio}");
    // Square of half-extent 0.16·64 = 10.24 px at scale 1 → ≈ 419 px².
    assert!((big - 419.0).abs() < 40.0, "area {big}");
}

#[test]
fn orientation_rotates_the_ellipse() {
    // The ellipse's long axis follows the orientation: second moments swap at 90°.
    let second = |o: u32| {
        let img = render([1, 5, o, 16, 16], 64);
        let (_, cx, cy) = moments(&img, 64);
        let (mut xx, mut yy) = (0.0, 0.0);
        for (i, &v) in img.iter().enumerate() {
            xx += v * ((i % 64) as f32 + 0.5 - cx).powi(2);
            yy += v * ((i / 64) as f32 + 0.5 - cy).powi(2);
        }
        (xx, yy)
    };
    let (xx0, yy0) = second(0);
    let (xx90, yy90) = second(10); // 10/40 of a turn = 90°
    assert!(xx0 > 2.0 * yy0 && yy90 > 2.0 * xx90, "{xx0} {yy0} / {xx90} {yy90}");
}

#[test]
fn splits_are_disjoint_and_seeded() {
    let spec: vaelab_data::DataSpec = serde_yaml_like("dsprites", 32, 500, 100);
    let a = vaelab_data::load(&spec, 0).unwrap();
    let b = vaelab_data::load(&spec, 0).unwrap();
    let c = vaelab_data::load(&spec, 1).unwrap();
    assert_eq!(a.train.x, b.train.x);
    assert_ne!(a.train.factors, c.train.factors);
    let key = |f: &[u32]| f.chunks(5).map(|c| c.to_vec()).collect::<std::collections::HashSet<_>>();
    let (tr, te) = (key(a.train.factors.as_ref().unwrap()), key(a.test.factors.as_ref().unwrap()));
    assert_eq!(tr.len(), 500);
    assert!(tr.is_disjoint(&te));
}

fn serde_yaml_like(kind: &str, size: usize, n_train: usize, n_test: usize) -> vaelab_data::DataSpec {
    vaelab_data::DataSpec {
        kind: if kind == "dsprites" { vaelab_data::DataKind::Dsprites } else { unreachable!() },
        dir: None,
        image_size: size,
        n_train: Some(n_train),
        n_test: Some(n_test),
        validation: 0,
        source: Default::default(),
        binarize: Default::default(),
        split_seed: 0,
        scale: 1.0,
    }
}
