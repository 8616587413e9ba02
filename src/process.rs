//! What the process asks of the operating system at start: as many open files as it may have
//! (connections held open are descriptors), and memory freed after start-up handed back. A leaf:
//! it knows nothing of the rest of the crate.

/// Descriptors left for everything but client connections: the store's connections and files,
/// SMTP and HTTP clients, probes, logs.
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard one: the usual soft limit of 1,024 is soon
/// reached by connections held open. Logged, with a warning when `max_connections` leaves too
/// few descriptors for the rest.
pub fn raise_open_files_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open files limit");
            return;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
                limit.rlim_cur = before;
            }
        }
        tracing::info!(before, now = limit.rlim_cur, "open files limit");
        limit.rlim_cur
    };
    if (max_connections as u64).saturating_add(RESERVED_FILES) > soft {
        tracing::warn!(
            max_connections,
            open_files = soft,
            "server.max_connections leaves fewer than {RESERVED_FILES} open files for the store \
             and the channels: lower it, or raise the hard limit (LimitNOFILE, ulimit -Hn)"
        );
    }
}

/// Hands memory freed after start-up back to the system. Loading a configuration with thousands
/// of subscribers builds large temporary trees; glibc keeps the freed pages otherwise.
///
/// It also fixes glibc's mmap threshold at 1 MiB. Left dynamic, the threshold climbs after the
/// first large block is freed, and later ones (argon2 takes 19 MiB per password checked) come
/// from the heap and stay there: a burst of logins left the process a gigabyte bigger for good.
/// Blocks of a mebibyte or more are now mapped and unmapped, so their memory goes back at once.
pub fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages and mallopt only sets a tuning
    // parameter; neither has preconditions.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
