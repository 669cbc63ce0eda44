//! Real file formats: CIFAR-10 binary and the dSprites .npz on files written here in the exact format, and
//! the real MNIST / Fashion-MNIST files (from ../shared/data or $VAELAB_DATA) cross-checked against numpy.

use std::path::{Path, PathBuf};
use std::time::Instant;
use vaelab_data::{DataKind, DataSpec};

// The workspace tests' Python (the system python3 if it has the packages, else a virtual environment made once).
#[path = "../../../tests/common/python.rs"]
mod python;

fn spec(kind: DataKind, dir: &Path) -> DataSpec {
    DataSpec { kind, dir: Some(dir.to_string_lossy().into()), image_size: 64, n_train: None, n_test: None, validation: 0, source: Default::default(), binarize: Default::default(), split_seed: 0, scale: 1.0 }
}

fn cifar_record(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072).map(|i| ((i as u32 * 7 + seed as u32) % 256) as u8));
    r
}

fn write_cifar(dir: &Path) {
    for k in 1..=5u8 {
        let recs: Vec<u8> = (0..3).flat_map(|j| cifar_record((k + j) % 10, k * 10 + j)).collect();
        std::fs::write(dir.join(format!("data_batch_{k}.bin")), recs).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), [cifar_record(9, 1), cifar_record(0, 2)].concat()).unwrap();
}

#[test]
fn cifar10_binary_loads() {
    let d = tempfile::tempdir().unwrap();
    write_cifar(d.path());
    let ds = vaelab_data::load(&spec(DataKind::Cifar10, d.path()), 0).unwrap();
    assert_eq!(ds.sample_shape, vec![3, 32, 32]);
    assert_eq!((ds.train.n, ds.test.n), (15, 2));
    assert_eq!(ds.train.labels.as_ref().unwrap()[..3], [1, 2, 3]);
    assert_eq!(ds.test.labels, Some(vec![9, 0]));
    // First pixel of the first test record: (0·7 + 1) / 255; channel-planar layout kept.
    assert_eq!(ds.test.x[0], 1.0 / 255.0);
    assert_eq!(ds.test.x[1024], ((1024 * 7 + 1) % 256) as f32 / 255.0);
}

#[test]
fn cifar10_bad_size_and_label_are_reported() {
    let d = tempfile::tempdir().unwrap();
    write_cifar(d.path());
    let p = d.path().join("data_batch_3.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.pop();
    std::fs::write(&p, &b).unwrap();
    let err = format!("{:#}", vaelab_data::load(&spec(DataKind::Cifar10, d.path()), 0).unwrap_err());
    assert!(err.contains("data_batch_3.bin") && err.contains("not a multiple of the 3073-byte"), "{err}");

    write_cifar(d.path());
    let p = d.path().join("test_batch.bin");
    let mut b = std::fs::read(&p).unwrap();
    b[3073] = 12;
    std::fs::write(&p, &b).unwrap();
    let err = format!("{:#}", vaelab_data::load(&spec(DataKind::Cifar10, d.path()), 0).unwrap_err());
    assert!(err.contains("test_batch.bin") && err.contains("record 1 has label 12"), "{err}");
}

#[test]
fn real_dsprites_npz_loads_with_factors() {
    use candle_core::{Device, Tensor};
    let d = tempfile::tempdir().unwrap();
    let n = 40usize;
    // Images rendered by the procedural generator from known factors, stored as the archive stores them.
    let mut imgs = vec![];
    let mut classes = vec![];
    for i in 0..n {
        let f = [(i % 3) as u32, (i % 6) as u32, (i % 40) as u32, (i % 32) as u32, ((i * 7) % 32) as u32];
        imgs.extend(vaelab_data::dsprites::render(f, 64).iter().map(|&v| v as u8));
        classes.push(0i64);
        classes.extend(f.iter().map(|&v| v as i64));
    }
    let imgs = Tensor::from_vec(imgs, (n, 64, 64), &Device::Cpu).unwrap();
    let classes = Tensor::from_vec(classes, (n, 6), &Device::Cpu).unwrap();
    let values = Tensor::zeros((n, 6), candle_core::DType::F64, &Device::Cpu).unwrap();
    let path = d.path().join("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz");
    Tensor::write_npz(&[("imgs", &imgs), ("latents_classes", &classes), ("latents_values", &values)], &path).unwrap();

    let mut s = spec(DataKind::Dsprites, d.path());
    s.n_train = Some(30);
    s.n_test = Some(10);
    let ds = vaelab_data::load(&s, 0).unwrap();
    assert_eq!(ds.sample_shape, vec![1, 64, 64]);
    assert_eq!((ds.train.n, ds.test.n), (30, 10));
    let f = ds.train.factors.as_ref().unwrap();
    for i in 0..ds.train.n {
        let fi: [u32; 5] = f[i * 5..i * 5 + 5].try_into().unwrap();
        assert_eq!(ds.train.sample(i, 64 * 64), &vaelab_data::dsprites::render(fi, 64)[..], "image {i} matches its factors");
    }
}

fn shared_data() -> Option<PathBuf> {
    let p = std::env::var("VAELAB_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    p.join("mnist").is_dir().then_some(p)
}

/// Real MNIST and Fashion-MNIST: load time, label counts, and first labels / pixel sums against numpy.
#[test]
fn real_idx_datasets_load_fast_and_match_numpy() {
    let Some(root) = shared_data() else {
        assert!(std::env::var_os("CI").is_none(), "CI must provide the real datasets (../shared/data)");
        eprintln!("skipped: no ../shared/data and no VAELAB_DATA");
        return;
    };
    for (name, kind) in [("mnist", DataKind::Mnist), ("fashion-mnist", DataKind::FashionMnist)] {
        let t = Instant::now();
        let ds = vaelab_data::load(&spec(kind, &root.join(name)), 0).unwrap();
        let secs = t.elapsed().as_secs_f64();
        // A guard against pathological reads (byte-at-a-time I/O took minutes), not a benchmark: the bound
        // leaves room for a machine busy with other jobs.
        assert!(secs < 10.0, "{name} loaded in {secs:.2}s");
        assert_eq!((ds.train.n, ds.test.n), (60_000, 10_000));
        eprintln!("{name}: 70k images loaded in {secs:.2}s");
        let labels = ds.train.labels.as_ref().unwrap();
        let mut counts = [0usize; 10];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        if name == "mnist" {
            assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
        } else {
            assert_eq!(counts, [6000; 10]);
        }
        let script = r#"
import gzip, sys, numpy as np
d = sys.argv[1]
img = np.frombuffer(gzip.open(d + '/train-images-idx3-ubyte.gz').read(), np.uint8, offset=16).reshape(-1, 784)
lab = np.frombuffer(gzip.open(d + '/train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
test = np.frombuffer(gzip.open(d + '/t10k-images-idx3-ubyte.gz').read(), np.uint8, offset=16)
print(' '.join(map(str, lab[:20])))
print(' '.join(str(int(s)) for s in img[:5].sum(axis=1, dtype=np.int64)))
print(int(test.sum(dtype=np.int64)))
"#;
        let out = std::process::Command::new(python::python3()).args(["-c", script, root.join(name).to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let ours_labels: Vec<String> = labels[..20].iter().map(|l| l.to_string()).collect();
        assert_eq!(lines[0], ours_labels.join(" "), "{name}: first labels");
        let sums: Vec<String> = (0..5).map(|i| (ds.train.sample(i, 784).iter().map(|&v| (v * 255.0).round() as i64).sum::<i64>()).to_string()).collect();
        assert_eq!(lines[1], sums.join(" "), "{name}: pixel sums of the first images");
        let total: i64 = ds.test.x.iter().map(|&v| (v * 255.0).round() as i64).sum();
        assert_eq!(lines[2], total.to_string(), "{name}: test pixel total");
    }
}
