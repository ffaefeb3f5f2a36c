//! Long jobs (training) run on a worker thread while the calling thread, with the GIL released
//! most of the time, relays progress to a Python callback and checks for Ctrl-C. Ctrl-C cancels
//! the job's budget, so the search stops cleanly and keeps its best model so far.

use exeml_core::{Budget, Error, Progress};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// How often the waiting thread looks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

enum Event {
    Phase(String),
    Fraction(f64),
}

/// Progress that forwards to the waiting Python thread.
struct ChannelProgress(Sender<Event>);

impl Progress for ChannelProgress {
    fn phase(&self, message: &str) {
        // The receiver only goes away after the job ends, so a failed send loses nothing.
        let _ = self.0.send(Event::Phase(message.to_string()));
    }

    fn fraction(&self, done: f64) {
        let _ = self.0.send(Event::Fraction(done));
    }
}

/// What a finished job produced, and whether the user interrupted it.
pub struct Finished<T> {
    /// The job's value.
    pub value: T,
    /// True if Ctrl-C stopped the job early (it still produced a value).
    pub interrupted: bool,
}

/// Run `job` on a worker thread under `budget`, relaying progress to `callback(kind, value)`
/// (`kind` is `"phase"` or `"fraction"`). Ctrl-C (or an exception raised by the callback)
/// cancels the budget; if the job then fails, that exception is raised instead of its error.
pub fn run_job<T, F>(
    py: Python<'_>,
    budget: &Budget,
    callback: Option<&Bound<'_, PyAny>>,
    job: F,
) -> PyResult<Finished<T>>
where
    T: Send + 'static,
    F: FnOnce(&dyn Progress) -> exeml_core::Result<T> + Send + 'static,
{
    let (sender, receiver) = channel::<Event>();
    // The receiver is waited on with the GIL released, which needs it `Sync`.
    let events = Mutex::new(receiver);
    let worker = std::thread::Builder::new()
        .name("exeml-train".into())
        .spawn(move || {
            let progress = ChannelProgress(sender);
            catch_unwind(AssertUnwindSafe(|| job(&progress)))
        })
        .map_err(|e| {
            crate::errors::to_py(Error::Backend {
                backend: "python",
                message: format!("cannot start the training thread: {e}"),
            })
        })?;
    let mut stop: Option<PyErr> = None;
    loop {
        let next = py.detach(|| match events.lock() {
            Ok(receiver) => receiver.recv_timeout(POLL),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        });
        match next {
            Ok(event) => {
                if let (Some(callback), None) = (callback, &stop) {
                    let sent = match event {
                        Event::Phase(message) => callback.call1(("phase", message)),
                        Event::Fraction(done) => callback.call1(("fraction", done)),
                    };
                    if let Err(e) = sent {
                        budget.cancel();
                        stop = Some(e);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stop.is_none() {
            if let Err(e) = py.check_signals() {
                budget.cancel();
                stop = Some(e);
            }
        }
    }
    let joined = py.detach(|| worker.join());
    let outcome = match joined {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) | Err(payload) => return Err(crate::errors::panic_to_py(payload)),
    };
    match (outcome, stop) {
        (Ok(value), stop) => Ok(Finished {
            value,
            interrupted: stop.is_some(),
        }),
        (Err(_), Some(stop)) => Err(stop),
        (Err(e), None) => Err(crate::errors::to_py(e)),
    }
}
