//! TensorBoard event files.
//!
//! tensorboard-rs gives us the TFRecord framing (`RecordWriter`, masked CRC32C) and the scalar summary, and
//! tensorboard-proto the Event/Summary protos. We do not use its `SummaryWriter`/`EventFileWriter`: they
//! `expect()` on every I/O error (a full disk would panic the whole sweep) and write from a detached thread,
//! so errors cannot reach the trial. Its `summary::image` is also unusable as is: it documents CHW input but
//! reads interleaved HWC, swaps width and height, and only takes RGB. Images are therefore PNG-encoded by
//! [`crate::image`] and wrapped in the Summary proto here.

use protobuf::Message;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tensorboard_proto::event::Event;
use tensorboard_proto::summary::{Summary, Summary_Image, Summary_Value};
use tensorboard_rs::record_writer::RecordWriter;

pub struct EventWriter {
    writer: RecordWriter<BufWriter<File>>,
    path: PathBuf,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Create `dir/events.out.tfevents.<secs>.<host>.<pid>` (TensorBoard's naming) and write the version header.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        let t = now();
        // Keep names unique even when two writers start within the same second in one process.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{}.{seq}", t as u64, std::process::id()));
        let file = File::create(&path)?;
        let mut w = Self { writer: RecordWriter::new(BufWriter::new(file)), path };
        let mut ev = Event::new();
        ev.set_wall_time(t);
        ev.set_file_version("brain.Event:2".into());
        w.write_event(&ev)?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        let bytes = ev.write_to_bytes().map_err(|e| std::io::Error::other(e.to_string()))?;
        self.writer.write(&bytes)
    }

    pub fn summary(&mut self, summary: Summary, step: u64) -> std::io::Result<()> {
        let mut ev = Event::new();
        ev.set_wall_time(now());
        ev.set_step(step as i64);
        ev.set_summary(summary);
        self.write_event(&ev)
    }

    pub fn scalar(&mut self, tag: &str, value: f32, step: u64) -> std::io::Result<()> {
        self.summary(tensorboard_rs::summary::scalar(tag, value), step)
    }

    /// An image summary from an already encoded PNG of `height × width` with `channels` (1, 3 or 4).
    pub fn png_image(&mut self, tag: &str, png: Vec<u8>, height: usize, width: usize, channels: usize, step: u64) -> std::io::Result<()> {
        let mut img = Summary_Image::new();
        img.set_height(height as i32);
        img.set_width(width as i32);
        img.set_colorspace(channels as i32);
        img.set_encoded_image_string(png);
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(img);
        let mut summary = Summary::new();
        summary.set_value(vec![value].into());
        self.summary(summary, step)
    }

    pub fn image(&mut self, tag: &str, grid: &crate::image::Image, step: u64) -> std::io::Result<()> {
        let png = grid.to_png()?;
        self.png_image(tag, png, grid.height, grid.width, grid.channels, step)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}
