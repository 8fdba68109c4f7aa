//! Progress bars on stderr (indicatif). They draw only on a terminal and only without
//! `--no-progress`, so piped and CI runs print nothing but the summary.

use crate::recorder::Recorder;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A bar counting `len` things (connections opened).
pub fn counter(rec: &Recorder, len: u64, what: &'static str) -> ProgressBar {
    if !rec.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(style(
        "{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed})",
    ));
    bar.set_message(what);
    bar
}

/// The measured window's bar: time done, with deliveries and ticks so far. Cleared on drop.
pub struct WindowBar {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl WindowBar {
    pub fn start(rec: &Arc<Recorder>, length: Duration) -> Self {
        if !rec.progress {
            return Self {
                bar: ProgressBar::hidden(),
                task: None,
            };
        }
        let bar = ProgressBar::new(length.as_millis() as u64);
        bar.set_style(style("{msg:>12} [{bar:40}] {elapsed}/{duration} {prefix}"));
        bar.set_message(rec.scenario);
        let (b, r, started) = (bar.clone(), rec.clone(), Instant::now());
        let task = tokio::spawn(async move {
            loop {
                b.set_position(started.elapsed().as_millis() as u64);
                let mut text = format!("frames {}", r.frames.load(Relaxed));
                for (what, n) in [("deliveries", &r.deliveries), ("ticks", &r.ticks)] {
                    let n = n.load(Relaxed);
                    if n > 0 {
                        text.push_str(&format!(", {what} {n}"));
                    }
                }
                b.set_prefix(text);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }
}

impl Drop for WindowBar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
