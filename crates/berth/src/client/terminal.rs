//! The local terminal of `berth exec -t`: raw mode for the session's length, and its size.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use kube::api::TerminalSize;
use nix::sys::termios::{self, SetArg, Termios};

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);

/// Puts stdin's terminal in raw mode (keys pass through unprocessed: the remote terminal does
/// echo, line editing and Ctrl-C) and restores it when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, or `None` when stdin is not a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The size of the terminal on stdout (or stdin), if either is one.
pub fn size() -> Option<TerminalSize> {
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    [stdout.as_fd(), stdin.as_fd()]
        .into_iter()
        .find_map(size_of)
}

fn size_of(fd: BorrowedFd<'_>) -> Option<TerminalSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer, which outlives the call.
    unsafe { get_winsize(fd.as_raw_fd(), &mut ws) }.ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        width: ws.ws_col,
        height: ws.ws_row,
    })
}
