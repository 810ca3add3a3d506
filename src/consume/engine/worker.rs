//! A topic's file worker: one thread of its own that does every file operation of the topic
//! (checkpoint reads and writes, decoding, the sink's files and directory syncs, bad records),
//! so none of it blocks a thread of the async runtime. The topic's loop sends it requests
//! one at a time over a channel and awaits each answer; a batch's records reach it through the
//! batch's own bounded channel while they are fetched.
//!
//! The worker ends when its [`FileWorker`] handle is dropped, after the request in hand. A
//! panic on it is raised again on the async side, as a panic in the task itself would be.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::batch::{BatchOrder, BatchOutcome, Resumption, TopicFiles};
use crate::consume::ConsumeError;

/// What the topic's loop asks of its file worker.
enum Request {
    /// `--overwrite`, then read where the topic resumes and check the output against it.
    Recover(oneshot::Sender<Result<Resumption, ConsumeError>>),
    /// Remove what an abandoned attempt of a batch wrote.
    Discard {
        batch: u64,
        reply: oneshot::Sender<Result<(), ConsumeError>>,
    },
    /// Write a batch to its commit.
    Batch {
        order: BatchOrder,
        reply: oneshot::Sender<BatchOutcome>,
    },
}

/// The async side's handle on a topic's file worker.
pub(super) struct FileWorker {
    topic: String,
    requests: mpsc::Sender<Request>,
    thread: Option<JoinHandle<()>>,
}

/// A batch handed to the worker, its outcome still to come.
pub(super) struct PendingBatch(oneshot::Receiver<BatchOutcome>);

impl FileWorker {
    /// Starts the worker thread (`consume:<topic>`), which owns `files` from now on.
    pub(super) fn start(files: TopicFiles) -> Result<Self, ConsumeError> {
        let topic = files.topic.clone();
        // One request at a time: the loop awaits each answer before the next.
        let (requests, inbox) = mpsc::channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("consume:{topic}"))
            .spawn(move || serve(files, inbox))
            .map_err(|source| ConsumeError::Worker {
                topic: topic.clone(),
                source,
            })?;
        Ok(Self {
            topic,
            requests,
            thread: Some(thread),
        })
    }

    pub(super) async fn recover(&mut self) -> Result<Resumption, ConsumeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Recover(reply)).await;
        self.answer(answer).await
    }

    pub(super) async fn discard(&mut self, batch: u64) -> Result<(), ConsumeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Discard { batch, reply }).await;
        self.answer(answer).await
    }

    /// Hands a batch over; the worker starts on it at once.
    pub(super) async fn submit(&mut self, order: BatchOrder) -> PendingBatch {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Batch { order, reply }).await;
        PendingBatch(answer)
    }

    /// Waits for the batch to commit or fail.
    pub(super) async fn outcome(&mut self, pending: PendingBatch) -> BatchOutcome {
        self.answer(pending.0).await
    }

    /// Lets the worker go and waits for its thread to end (it is idle between requests).
    pub(super) async fn finish(mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        drop(self);
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("joining a file worker");
        if let Err(panic) = joined {
            std::panic::resume_unwind(panic);
        }
    }

    async fn send(&mut self, request: Request) {
        if self.requests.send(request).await.is_err() {
            self.died().await
        }
    }

    async fn answer<T>(&mut self, answer: oneshot::Receiver<T>) -> T {
        match answer.await {
            Ok(value) => value,
            Err(_) => self.died().await,
        }
    }

    /// The worker ended with a request unanswered: only a panic does that. Raised here.
    async fn died<T>(&mut self) -> T {
        let thread = self.thread.take().expect("a file worker dies once");
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("joining a file worker");
        match joined {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!(
                "the file worker of topic {} ended with a request unanswered",
                self.topic
            ),
        }
    }
}

/// The worker thread: answers requests until the handle is dropped. An answer nobody waits
/// for any more (the topic's task was dropped) is thrown away.
fn serve(mut files: TopicFiles, mut inbox: mpsc::Receiver<Request>) {
    while let Some(request) = inbox.blocking_recv() {
        match request {
            Request::Recover(reply) => {
                let _ = reply.send(files.recover());
            }
            Request::Discard { batch, reply } => {
                let _ = reply.send(files.begin(batch));
            }
            Request::Batch { order, reply } => {
                let _ = reply.send(files.write_batch(order));
            }
        }
    }
}
