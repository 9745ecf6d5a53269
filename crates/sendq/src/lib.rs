//! The one `ioctl` tailship's tcp sink needs: `SIOCOUTQ`, the bytes of a TCP socket's send
//! queue that its peer has not acknowledged yet (written but not sent, plus sent but not
//! acked). `written - unacked` is how far the peer's TCP has acknowledged the stream.
//!
//! With it, `peer_window`: the receive window the peer last advertised (`TCP_INFO`'s
//! `tcpi_snd_wnd`, Linux 5.19 and later): how much room its kernel has for bytes its
//! application has not read yet.
//!
//! It lives in its own crate because the agent's library forbids `unsafe` and neither rustix,
//! socket2 nor nix exposes this ioctl (or `TCP_INFO`'s `tcpi_bytes_acked`) through a safe
//! function. Linux only.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Bytes written to `socket` that its peer's TCP has not acknowledged yet.
pub fn unacked<S: AsFd>(socket: &S) -> io::Result<u64> {
    let fd = socket.as_fd();
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor, borrowed for the duration of the call; SIOCOUTQ
    // (TIOCOUTQ's number) writes one `int` through the pointer, which points to `n`, a live,
    // properly aligned `c_int` on this stack frame. The kernel rejects descriptors that are not
    // sockets (ENOTTY) or not connected (EINVAL) with -1, handled below.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Where `tcpi_snd_wnd` lies in the kernel's `struct tcp_info` (include/uapi/linux/tcp.h):
/// after 8 one-byte fields, 24 `u32`s, 4 `u64`s, 6 `u32`s, 4 `u64`s, 2 `u32`s, 2 `u64`s,
/// 3 `u32`s. libc's `tcp_info` stops before it, so the buffer is read by offset.
const SND_WND_OFFSET: usize = 228;

/// The receive window the peer last advertised, in bytes (scaled); `None` on a kernel
/// older than 5.19, whose `tcp_info` ends before it.
pub fn peer_window<S: AsFd>(socket: &S) -> io::Result<Option<u32>> {
    let fd = socket.as_fd();
    // u64s: the kernel writes a struct with 8-byte fields; 512 bytes is more than it has.
    let mut buf = [0u64; 64];
    let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
    // SAFETY: `fd` is an open descriptor borrowed for the call; the kernel writes at most
    // `len` bytes into `buf` (a live, 8-aligned stack array of exactly `len` bytes) and
    // stores the length it wrote in `len`, a live `socklen_t`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = SND_WND_OFFSET + 4;
    if (len as usize) < end {
        return Ok(None);
    }
    let field: [u8; 4] = bytes[SND_WND_OFFSET..end].try_into().map_err(io::Error::other)?;
    Ok(Some(u32::from_ne_bytes(field)))
}

#[cfg(test)]
mod tests {
    use super::{peer_window, unacked};
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn all_acked_once_the_peer_has_the_bytes() {
        let (mut c, mut s) = pair();
        c.write_all(&[b'x'; 100_000]).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 65536];
        while got < 100_000 {
            got += s.read(&mut buf).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while unacked(&c).unwrap() > 0 {
            assert!(Instant::now() < deadline, "still unacked: {}", unacked(&c).unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn unacked_and_no_window_while_the_peer_does_not_read() {
        let (mut c, _s) = pair();
        c.set_nonblocking(true).unwrap();
        // Fill the peer's receive buffer and our send buffer: what stays in ours is unacked.
        let chunk = [b'y'; 65536];
        let mut written = 0u64;
        loop {
            match c.write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let q = unacked(&c).unwrap();
        assert!(q > 0 && q <= written, "unacked {q} of {written}");
        // The peer's buffer fills as the queued bytes reach it: its window shrinks to 0 (the
        // field read by offset is the window, not a neighbour).
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer_window(&c).unwrap() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "window {:?} with the peer's buffer full",
                peer_window(&c)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_idle_peer_advertises_room() {
        let (c, _s) = pair();
        let w = peer_window(&c).unwrap();
        // This kernel is newer than 5.19; the offset is right if the window is plausible.
        let w = w.expect("tcp_info without tcpi_snd_wnd");
        assert!((1024..1 << 30).contains(&w), "window {w}");
    }

    #[test]
    fn the_offset_follows_the_fields_libc_knows() {
        // tcpi_bytes_acked (4.1) sits 108 bytes before tcpi_snd_wnd in the kernel's layout.
        assert_eq!(
            std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked),
            super::SND_WND_OFFSET - 108
        );
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(unacked(&f).is_err());
    }
}
