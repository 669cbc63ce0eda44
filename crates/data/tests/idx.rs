//! IDX loading: gz and raw files load; every malformed file is a clear error naming the file.

use std::io::Write;
use std::path::Path;

fn images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        b.extend(v.to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
    b
}

fn labels(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend(n.to_be_bytes());
    b.extend((0..n).map(|i| (i % 10) as u8));
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_set(dir: &Path, train_img: Vec<u8>, train_lab: Vec<u8>, gzip: bool) {
    let put = |name: &str, b: Vec<u8>| {
        if gzip {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&b)).unwrap()
        } else {
            std::fs::write(dir.join(name), b).unwrap()
        }
    };
    put("train-images-idx3-ubyte", train_img);
    put("train-labels-idx1-ubyte", train_lab);
    put("t10k-images-idx3-ubyte", images(3, 28, 28));
    put("t10k-labels-idx1-ubyte", labels(3));
}

fn load(dir: &Path) -> Result<vaelab_data::Dataset, String> {
    let spec = vaelab_data::DataSpec {
        kind: vaelab_data::DataKind::Mnist,
        dir: Some(dir.to_string_lossy().into()),
        image_size: 64,
        n_train: None,
        n_test: None,
        validation: 0,
        source: Default::default(),
        binarize: Default::default(),
        split_seed: 0,
        scale: 1.0,
    };
    vaelab_data::load(&spec, 0).map_err(|e| format!("{e:#}"))
}

#[test]
fn gz_and_raw_files_load_identically() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_set(a.path(), images(5, 28, 28), labels(5), true);
    write_set(b.path(), images(5, 28, 28), labels(5), false);
    let (da, db) = (load(a.path()).unwrap(), load(b.path()).unwrap());
    assert_eq!(da.train.n, 5);
    assert_eq!(da.sample_shape, vec![1, 28, 28]);
    assert_eq!(da.train.x, db.train.x);
    assert_eq!(da.train.labels, Some(vec![0, 1, 2, 3, 4]));
    assert_eq!(da.train.x[1], 1.0 / 255.0);
}

fn expect_error(img: Vec<u8>, lab: Vec<u8>, gzip: bool, file: &str, what: &str) {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), img, lab, gzip);
    let err = load(d.path()).expect_err("malformed data must not load");
    assert!(err.contains(file), "error names {file}: {err}");
    assert!(err.contains(what), "error says {what}: {err}");
}

#[test]
fn truncated_images_are_reported() {
    let mut img = images(5, 28, 28);
    img.truncate(img.len() - 100);
    expect_error(img, labels(5), false, "train-images-idx3-ubyte", "truncated");
}

#[test]
fn truncated_gzip_is_reported() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), images(5, 28, 28), labels(5), true);
    let p = d.path().join("train-images-idx3-ubyte.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let err = load(d.path()).unwrap_err();
    assert!(err.contains("train-images-idx3-ubyte.gz") && err.contains("corrupt gzip"), "{err}");
}

#[test]
fn wrong_magic_is_reported() {
    let mut img = images(5, 28, 28);
    img[3] = 7;
    expect_error(img, labels(5), true, "train-images-idx3-ubyte.gz", "wrong magic number 0x00000807");
}

#[test]
fn label_count_mismatch_is_reported() {
    expect_error(images(5, 28, 28), labels(4), false, "train-labels-idx1-ubyte", "4 labels but");
}

#[test]
fn out_of_range_label_is_reported() {
    let mut lab = labels(5);
    lab[9] = 42;
    expect_error(images(5, 28, 28), lab, false, "train-labels-idx1-ubyte", "label 42 at index 1");
}

#[test]
fn missing_directory_is_reported() {
    let err = load(Path::new("/nonexistent/vaelab-data")).unwrap_err();
    assert!(err.contains("/nonexistent/vaelab-data") && err.contains("does not exist"), "{err}");
}
