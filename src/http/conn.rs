//! Connection slots: the accounting the accept loop and every connection share, so that
//! slow or idle connections cannot keep new clients out. A connection holds one of
//! `max_connections` slots while it is open. When fewer than a reserve (an eighth of
//! them) are free, slots are scarce ("pressure"): a connection that has no request in
//! flight (a kept-alive connection between requests, or one still sending its first
//! headers, slowloris-style) is closed once it has been idle `PRESSED_ALLOWANCE`, and
//! request bodies get that long, not `BODY_RATE_GRACE`, before their rate is checked.
//! Closing them frees slots for the clients waiting in the accept queue. A response
//! still being written to the socket counts as activity (hyper may hold the last of a
//! body after dropping it), so a slow but reading client's download is not cut short.
//! Without pressure hyper's own header read timeout (which also runs between requests)
//! applies. A connection closed under pressure is reset (zero linger), not closed
//! gracefully: the node keeps no TIME_WAIT for it, which at a thousand closes a second
//! from one client address made new connections' SYNs collide with old ones (seconds of
//! retransmission for a client of the same address). Knows hyper's body trait and
//! tokio's IO traits, nothing of routes or the node.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Slots kept for new clients: a `1/RESERVE_DIVISOR` share of `max_connections`. Below
/// that many free slots, idle connections are closed early. A share, so that a small
/// cap (tests, tiny devices) keeps every slot for its connections.
pub const RESERVE_DIVISOR: usize = 8;

/// How long a connection may stay idle (no request in flight: between requests, or
/// still sending headers), and how long a request body may take to reach the minimum
/// rate, while slots are scarce. Long enough for any client that is actually sending
/// (a request's headers come in one packet); short enough that a thousand slow or idle
/// connections give their slots up within a second.
pub const PRESSED_ALLOWANCE: Duration = Duration::from_millis(500);

/// Shared by the accept loop and the connections: the slots and the pressure flag.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    reserve: usize,
    pressure: watch::Sender<bool>,
}

impl Slots {
    /// `max` slots, of which `max / RESERVE_DIVISOR` are the reserve.
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max)),
            reserve: max / RESERVE_DIVISOR,
            pressure: watch::Sender::new(false),
        })
    }

    /// Waits for a free slot; None only if the slots were closed (they never are).
    pub(super) async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        self.update();
        Some(Slot {
            permit: Some(permit),
            slots: self.clone(),
        })
    }

    /// True while slots are scarce.
    pub(super) fn pressed(&self) -> bool {
        *self.pressure.borrow()
    }

    /// A receiver told of every change of pressure.
    pub(super) fn pressure(&self) -> watch::Receiver<bool> {
        self.pressure.subscribe()
    }

    /// Sets the pressure flag from the free slots: on below the reserve, off again only
    /// at twice the reserve, so that one connection coming and going does not wake every
    /// idle connection each time.
    fn update(&self) {
        let free = self.permits.available_permits();
        let reserve = self.reserve;
        self.pressure.send_if_modified(|pressed| {
            let now = if *pressed {
                free < 2 * reserve
            } else {
                free < reserve
            };
            let changed = now != *pressed;
            *pressed = now;
            changed
        });
    }
}

/// One connection's slot; given back when dropped.
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.slots.update();
    }
}

/// Whether a connection has a request in flight, and since when it has not.
pub(super) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// Set when `evicted` resolves: the socket is reset when dropped.
    evicted: AtomicBool,
}

struct State {
    /// Requests whose response is not yet sent.
    busy: usize,
    /// When the connection last became idle (or was accepted).
    idle_since: Instant,
    /// When bytes were last written to the socket.
    wrote: Instant,
}

impl State {
    /// When the connection may be closed under pressure, if it is idle.
    fn due(&self) -> Option<Instant> {
        (self.busy == 0).then(|| self.idle_since.max(self.wrote) + PRESSED_ALLOWANCE)
    }
}

impl Activity {
    /// A connection accepted now, idle until its first request's headers are read.
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                busy: 0,
                idle_since: Instant::now(),
                wrote: Instant::now(),
            }),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
        })
    }

    /// Marks a request in flight until the returned guard drops (with its response body).
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.lock().busy += 1;
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Resolves when the connection should be closed to free its slot: it has been idle
    /// `PRESSED_ALLOWANCE` while slots are scarce. Never resolves otherwise.
    pub(super) async fn evicted(&self, mut pressure: watch::Receiver<bool>) {
        loop {
            let pressed = *pressure.borrow_and_update();
            let deadline = if pressed { self.lock().due() } else { None };
            tokio::select! {
                changed = pressure.changed() => {
                    if changed.is_err() {
                        // The server is gone; the connection ends with it.
                        std::future::pending::<()>().await;
                    }
                }
                () = self.changed.notified() => {}
                () = sleep_until(deadline) => {
                    let due = self.lock().due();
                    if *pressure.borrow() && due.is_some_and(|at| at <= Instant::now()) {
                        self.evicted.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }

    /// Notes bytes written to the socket.
    fn wrote(&self) {
        self.lock().wrote = Instant::now();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's socket, noting each write in its `Activity`, and reset when dropped
/// after an eviction.
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    /// `inner`, its writes noted in `activity`.
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Watched {
        Watched { inner, activity }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.activity.evicted.load(Ordering::Relaxed) {
            // Zero linger: the close is a reset, and leaves no TIME_WAIT here.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A request in flight on a connection.
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy = state.busy.saturating_sub(1);
        if state.busy == 0 {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until hyper has sent
/// it (and drops it): a long download is not an idle connection.
pub(super) struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    /// `inner`, in flight until dropped.
    pub(super) fn new(inner: B, busy: Busy) -> Tracked<B> {
        Tracked { inner, _busy: busy }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_connections_are_evicted_only_under_pressure() {
        let slots = Slots::new(16);
        let mut held = Vec::new();
        for _ in 0..14 {
            held.push(slots.acquire().await.unwrap());
        }
        assert!(!slots.pressed(), "two free of a reserve of two");
        let idle = Activity::new();
        let busy = Activity::new();
        let _request = busy.begin();
        // Real time: twice the allowance is enough to see a deadline that should not be.
        let calm = tokio::time::timeout(PRESSED_ALLOWANCE * 2, idle.evicted(slots.pressure()));
        assert!(calm.await.is_err(), "evicted without pressure");
        held.push(slots.acquire().await.unwrap());
        assert!(slots.pressed());
        // A hang guard: the idle connection is already past its allowance.
        let evicted =
            tokio::time::timeout(Duration::from_secs(30), idle.evicted(slots.pressure())).await;
        assert!(
            evicted.is_ok(),
            "an idle connection kept its slot under pressure"
        );
        let kept = tokio::time::timeout(PRESSED_ALLOWANCE * 2, busy.evicted(slots.pressure()));
        assert!(
            kept.await.is_err(),
            "a connection with a request in flight was evicted"
        );
        // Its response body dropped, hyper may still be writing the end of it: the
        // allowance runs from the last write.
        let t0 = Instant::now();
        let mut state = State {
            busy: 0,
            idle_since: t0,
            wrote: t0 + Duration::from_secs(1),
        };
        assert_eq!(
            state.due(),
            Some(t0 + Duration::from_secs(1) + PRESSED_ALLOWANCE)
        );
        state.busy = 1;
        assert_eq!(state.due(), None);
        // Pressure lifts only at twice the reserve.
        held.truncate(13);
        assert!(slots.pressed());
        held.truncate(12);
        assert!(!slots.pressed());
    }
}
