//! The render pool: a few dedicated threads that render and serialize compositions, fed
//! by a bounded queue.
//!
//! Rendering costs milliseconds of CPU per second of audio, so it never runs on the engine
//! thread or a tokio worker. A full queue is refused at once (`503 RENDER_BUSY`) rather
//! than waited on, and the same parameters asked for while they are being rendered join
//! the render in flight: they are rendered once.

use bandsync_protocol::repo::MusicalParams;
use bandsync_render::{render, Rendered};
use crossbeam_channel::{Sender, TrySendError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A finished render: the samples and how long they took, ms.
pub type RenderOutcome = Result<(Arc<Rendered>, f64), String>;
/// What to do with a finished render; runs on the render thread. The flag says whether
/// this request joined a render someone else asked for first.
pub type Then = Box<dyn FnOnce(RenderOutcome, bool) + Send>;

enum Job {
    Render {
        key: String,
        params: MusicalParams,
    },
    /// Other CPU work that belongs off the runtime (serializing a composition that another
    /// instance rendered).
    Task(Box<dyn FnOnce() + Send>),
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// How a render request was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A new render.
    New,
    /// Joined an identical render already in flight.
    Joined,
}

type InFlight = Arc<Mutex<HashMap<String, Vec<Then>>>>;

pub struct RenderPool {
    jobs: Sender<Job>,
    in_flight: InFlight,
}

impl RenderPool {
    /// Starts `threads` render threads behind a queue of `queue` jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<RenderPool> {
        let (jobs, inbox) = crossbeam_channel::bounded::<Job>(queue);
        let in_flight: InFlight = Arc::default();
        for n in 0..threads.max(1) {
            let inbox = inbox.clone();
            let in_flight = in_flight.clone();
            std::thread::Builder::new()
                .name(format!("bandsync-render-{n}"))
                .spawn(move || {
                    // Ends when the pool (the only sender) is dropped.
                    for job in inbox {
                        run(job, &in_flight);
                    }
                })?;
        }
        Ok(RenderPool { jobs, in_flight })
    }

    /// Renders `params` and calls `then` with the outcome, on a render thread. `params`
    /// must have passed [`MusicalParams::validate`].
    pub fn render(&self, params: MusicalParams, then: Then) -> Result<Queued, Busy> {
        let key = serde_json::to_string(&params).expect("parameters always serialize");
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = in_flight.get_mut(&key) {
            waiting.push(then);
            return Ok(Queued::Joined);
        }
        // Queued under the lock: the render cannot finish (and look for its waiters)
        // before they are registered.
        match self.jobs.try_send(Job::Render {
            key: key.clone(),
            params,
        }) {
            Ok(()) => {
                in_flight.insert(key, vec![then]);
                Ok(Queued::New)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Runs `task` on a render thread.
    pub fn spawn(&self, task: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        self.jobs
            .try_send(Job::Task(Box::new(task)))
            .map_err(|_| Busy)
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }
}

fn run(job: Job, in_flight: &InFlight) {
    match job {
        Job::Task(task) => {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
                tracing::error!("a render-pool task panicked");
            }
        }
        Job::Render { key, params } => {
            let started = Instant::now();
            let rendered = std::panic::catch_unwind(|| render(&params));
            let outcome = match rendered {
                Ok(audio) => Ok((Arc::new(audio), started.elapsed().as_secs_f64() * 1000.0)),
                Err(_) => {
                    tracing::error!(?params, "the renderer panicked");
                    Err("the renderer failed on these parameters".to_string())
                }
            };
            let waiting = in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key)
                .unwrap_or_default();
            for (n, then) in waiting.into_iter().enumerate() {
                let outcome = outcome.clone();
                let call = || then(outcome, n > 0);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err() {
                    tracing::error!("a render continuation panicked");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn params(seed: u32) -> MusicalParams {
        MusicalParams {
            duration: 0.5,
            seed,
            ..MusicalParams::default()
        }
    }

    #[test]
    fn identical_parameters_in_flight_render_once() {
        // One thread, blocked by a task, so both requests are queued before either renders.
        let pool = RenderPool::new(1, 4).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        pool.spawn(move || {
            let _ = gate_rx.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let first = pool.render(params(1), Box::new(move |o, _| tx.send(o).unwrap()));
        let second = pool.render(params(1), Box::new(move |o, _| tx2.send(o).unwrap()));
        assert_eq!(first, Ok(Queued::New));
        assert_eq!(second, Ok(Queued::Joined));
        gate_tx.send(()).unwrap();
        let a = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        let b = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0), "both waiters share one render");
    }

    #[test]
    fn a_full_queue_is_refused_at_once() {
        let pool = RenderPool::new(1, 1).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            let _ = gate_rx.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The thread is busy: one job fits in the queue, the next does not.
        assert_eq!(pool.render(params(1), Box::new(|_, _| {})), Ok(Queued::New));
        assert_eq!(pool.render(params(2), Box::new(|_, _| {})), Err(Busy));
        // The same parameters still join the queued render.
        assert_eq!(
            pool.render(params(1), Box::new(|_, _| {})),
            Ok(Queued::Joined)
        );
        gate_tx.send(()).unwrap();
    }
}
