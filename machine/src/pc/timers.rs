//! The timer thread: runs the PIT, RTC, PM timer and every LAPIC timer at their deadlines,
//! so interrupts arrive on time whatever the vCPUs are doing (running, halted or stopped in
//! the debugger), and sleeps in between until the next deadline or until a guest reprograms
//! a timer.

use super::PcBoard;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest sleep without a deadline (the clock may be paused, or nothing is armed).
const IDLE: Duration = Duration::from_millis(50);

pub fn spawn_timer_thread(board: Arc<PcBoard>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("timers".into())
        .spawn(move || {
            while !board.wiring.retired() {
                let next = board.update_timers();
                let now = board.wiring.clock.now();
                let wait = next.map_or(IDLE, |t| Duration::from_nanos(t.saturating_sub(now)).min(IDLE));
                if !wait.is_zero() {
                    board.wiring.wait_for_poke(wait);
                }
            }
        })
        .expect("spawning the timer thread")
}
