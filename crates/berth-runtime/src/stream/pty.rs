//! Exec with a terminal.
//!
//! The OCI runtime's foreground mode (`runc exec -t`) allocates the container's terminal itself
//! and copies between it and its own terminal, which it requires to be a real one: so the exec'd
//! `runc` gets the slave of a pseudo-terminal pair opened here as stdin/stdout/stderr and as its
//! controlling terminal (a new session). The streaming server keeps the master: what the client
//! types is written to it, what the container prints is read from it, and a resize sets its
//! window size, which makes the kernel send SIGWINCH to `runc`, which resizes the container's
//! terminal to match. The runtime's exit status is the command's, as without a terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use tokio::io::unix::AsyncFd;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

impl Size {
    /// The size a terminal has until the client says otherwise.
    pub const DEFAULT: Size = Size {
        width: 80,
        height: 24,
    };

    /// Parses the channel protocol's resize message, `{"Width":W,"Height":H}`.
    pub fn from_resize_message(data: &[u8]) -> Option<Size> {
        let v: serde_json::Value = serde_json::from_slice(data).ok()?;
        let dim = |k: &str| v.get(k)?.as_u64().and_then(|n| u16::try_from(n).ok());
        Some(Size {
            width: dim("Width")?,
            height: dim("Height")?,
        })
    }

    fn winsize(self) -> Winsize {
        Winsize {
            ws_row: self.height,
            ws_col: self.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// The master side of a pseudo-terminal, non-blocking, driven by tokio.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

impl Master {
    /// Reads what the terminal's programs printed. `Ok(0)` once every slave is closed (the
    /// kernel reports that as EIO on a master).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| match nix::unistd::read(fd.get_ref(), buf) {
                Ok(n) => Ok(n),
                Err(Errno::EIO) => Ok(0),
                Err(e) => Err(io::Error::from(e)),
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` as if typed on the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal's size; the kernel signals SIGWINCH to its foreground process group.
    pub fn resize(&self, size: Size) -> io::Result<()> {
        let ws = size.winsize();
        // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call; the
        // descriptor is a pty master this struct owns.
        unsafe { set_winsize(self.fd.get_ref().as_raw_fd(), &ws) }
            .map(drop)
            .map_err(io::Error::from)
    }
}

/// Opens a pseudo-terminal of `size` and sets `command` up to run as the leader of a new session
/// with the slave as its stdio and controlling terminal. The slave's descriptors live in
/// `command` until it is dropped: drop it after spawning, or the master never reports the end.
pub fn attach(command: &mut tokio::process::Command, size: Size) -> io::Result<Master> {
    let pair = openpty(Some(&size.winsize()), None).map_err(io::Error::from)?;
    let flags = fcntl(pair.master.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(
        pair.master.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(io::Error::from)?;
    let slave: OwnedFd = pair.slave;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe syscalls
    // (setsid, ioctl) without allocating.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // SAFETY: the master is an `OwnedFd` the `AsyncFd` owns from here on; nothing else holds or
    // closes that descriptor.
    let fd = unsafe { AsyncFd::register(pair.master) }?;
    Ok(Master { fd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_parse() {
        assert_eq!(
            Size::from_resize_message(br#"{"Width":120,"Height":40}"#),
            Some(Size {
                width: 120,
                height: 40
            })
        );
        assert_eq!(Size::from_resize_message(br#"{"Width":120}"#), None);
        assert_eq!(
            Size::from_resize_message(br#"{"Width":-1,"Height":2}"#),
            None
        );
        assert_eq!(Size::from_resize_message(b"junk"), None);
    }

    /// A shell on a terminal sees a tty of the size set, is told of resizes, echoes input and
    /// its exit status comes back; the master reports the end once the shell is gone.
    #[tokio::test]
    async fn a_command_runs_on_the_terminal() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args([
            "-c",
            "test -t 0 && stty size; read line; echo got=$line; stty size; exit 7",
        ]);
        let master = attach(
            &mut cmd,
            Size {
                width: 100,
                height: 30,
            },
        )
        .unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&out).contains("30 100") {
            let n = master.read(&mut buf).await.unwrap();
            assert!(n > 0, "ended early: {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
        master
            .resize(Size {
                width: 90,
                height: 20,
            })
            .unwrap();
        master.write_all(b"hello\n").await.unwrap();
        loop {
            let n = master.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("got=hello\r\n"), "{text:?}");
        assert!(text.contains("20 90"), "{text:?}");
        assert_eq!(child.wait().await.unwrap().code(), Some(7));
    }
}
