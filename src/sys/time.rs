//! The local time of day (`localtime_r`), for the text format's `-t`.

/// The local hour, minute and second at `secs` seconds since the Unix
/// epoch, as the system's time zone has them; None when it cannot say.
pub fn local_time_of_day(secs: u64) -> Option<(u32, u32, u32)> {
    let secs = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `tm` is plain data, ours; localtime_r reads `secs` and writes
    // only `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::localtime_r(&secs, &mut tm) };
    if done.is_null() {
        return None;
    }
    Some((
        u32::try_from(tm.tm_hour).ok()?,
        u32::try_from(tm.tm_min).ok()?,
        u32::try_from(tm.tm_sec).ok()?,
    ))
}
