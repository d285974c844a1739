//! Successor eviction (see `detour::Evict`): where an instruction pun's
//! jump cannot go where the bytes after the site's first instruction send
//! it (past the top of the address space, with randomisation off; into a
//! mapping), the instruction after it is moved to a trampoline, and the
//! site's jump ends in that instruction's new jump, whose displacement
//! rtrace chooses too.
//!
//! The two places are found together. The site's jump (at `site`, its
//! first `pun_free` bytes free) takes a displacement whose byte
//! `pun_free - 1` is the successor's `0xe9` ([`detour::evicting_pun_rels`]);
//! its bytes above that are the low bytes of the successor's displacement,
//! whose high bytes are free ([`detour::evicted_rels`]). The site's jump
//! goes first, to the place nearest the site among the pun pages' free
//! bytes and the gaps of the address space; then the trampoline, to the
//! nearest place its displacement can reach. Both stay within
//! [`REACH`] of their code, so that the trampoline's RIP-relative operands
//! still reach their targets.

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{self, Patch, JMP_LEN};
use crate::engine::tracer::Tracer;

use super::patch::{gaps, PAGE};
use super::state::PunPage;

/// How far from its code a pun's jump or a trampoline may be placed.
pub(super) const REACH: i64 = 1 << 30;

/// The size of a page mapped for puns and trampolines.
pub(super) const PUN_PAGE: u64 = 2 * PAGE;

/// A stretch of free bytes: in pun page `page`, or in a gap of the address
/// space (`None`), where a page would be mapped around the place taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Room {
    pub lo: u64,
    /// The end of the bytes a place may take.
    pub hi: u64,
    pub page: Option<usize>,
}

/// The free stretches of `pages` and of `gaps`, for a place of `len`
/// bytes (in a gap, the page mapped for it must fit).
pub(super) fn rooms(pages: &[PunPage], gaps: &[(u64, u64)], len: u64) -> Vec<Room> {
    let mut rooms = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let mut used = p.used.clone();
        used.sort_unstable();
        let mut lo = p.base.get();
        for (u, n) in used.into_iter().chain([(p.base.get() + p.size, 0)]) {
            if u > lo {
                rooms.push(Room {
                    lo,
                    hi: u,
                    page: Some(i),
                });
            }
            lo = lo.max(u + n);
        }
    }
    for &(lo, hi) in gaps {
        // The place's page, and the next one, within the gap.
        if hi >= lo + PUN_PAGE {
            rooms.push(Room {
                lo,
                hi: hi - PUN_PAGE + len,
                page: None,
            });
        }
    }
    rooms
}

/// The `r` nearest 0 with `r` to `r + len` within `lo..hi` and
/// `r mod period` in `first..first + run`.
pub(super) fn nearest_rel(
    lo: i64,
    hi: i64,
    len: i64,
    (period, first, run): (i64, i64, i64),
) -> Option<i64> {
    let last = hi - len;
    if last < lo {
        return None;
    }
    let target = 0i64.clamp(lo, last);
    let m = (target - first).rem_euclid(period);
    let (up, down) = match m < run {
        true => (target, target),
        false => (target + period - m, target - m + run - 1),
    };
    [up, down]
        .into_iter()
        .filter(|r| (lo..=last).contains(r))
        .min_by_key(|r| r.unsigned_abs())
}

/// The place nearest `base` (as a displacement from it, within
/// [`REACH`]) among `rooms` for `len` bytes whose displacement is in the
/// periodic set `rels` (see [`nearest_rel`]), and its room.
pub(super) fn nearest_place(
    rooms: &[Room],
    base: u64,
    len: u64,
    rels: (i64, i64, i64),
) -> Option<(i64, Room)> {
    rooms
        .iter()
        .filter_map(|room| {
            let lo = (room.lo as i64 - base as i64).max(-REACH);
            let hi = (room.hi as i64 - base as i64).min(REACH);
            nearest_rel(lo, hi, len as i64, rels).map(|r| (r, *room))
        })
        .min_by_key(|(r, _)| r.unsigned_abs())
}

/// A place chosen: its address, and which pun page it is in (`None`: a
/// page to be mapped around it, in a gap).
pub(super) type Place = (u64, Option<usize>);

/// Where the site's jump and the trampoline of eviction `patch` go (for
/// the trampoline, page `Some(pages.len())` is the page mapped for the
/// jump). None when nothing fits.
pub(super) fn places(
    pages: &[PunPage],
    gaps: &[(u64, u64)],
    patch: &Patch,
) -> Option<(Place, Place)> {
    let e = patch.evict.as_ref()?;
    let site = patch.addr + JMP_LEN as u64;
    let successor = e.addr() + JMP_LEN as u64;
    let jump = JMP_LEN as u64;
    let room = e.trampoline_room();
    let (rel, at) = nearest_place(
        &rooms(pages, gaps, jump),
        site,
        jump,
        detour::evicting_pun_rels(patch.pun_free),
    )?;
    let pun = site.wrapping_add_signed(rel);
    // The trampoline's rooms, the jump's place taken: in its page, or in
    // the page mapped for it, cut out of its gap.
    let mut pages = pages.to_vec();
    let mut gaps = gaps.to_vec();
    let page = match at.page {
        Some(i) => i,
        None => {
            let base = pun & !(PAGE - 1);
            gaps = gaps
                .into_iter()
                .flat_map(|(lo, hi)| match lo <= base && base < hi {
                    true => [(lo, base), (base + PUN_PAGE, hi)],
                    false => [(lo, hi), (0, 0)],
                })
                .filter(|&(lo, hi)| hi > lo)
                .collect();
            pages.push(PunPage {
                base: RuntimeAddr(base),
                size: PUN_PAGE,
                used: Vec::new(),
            });
            pages.len() - 1
        }
    };
    pages[page].used.push((pun, jump));
    let (period, first) = detour::evicted_rels(patch.pun_free, rel as i32);
    let (rel, at_tramp) = nearest_place(
        &rooms(&pages, &gaps, room),
        successor,
        room,
        (period, first, 1),
    )?;
    Some((
        (pun, at.page),
        (successor.wrapping_add_signed(rel), at_tramp.page),
    ))
}

impl Tracer {
    /// Takes the eviction of pun `patch` (space `key`, by `tid`): maps the
    /// pages its jump and trampoline need, writes the trampoline, and
    /// makes `patch` replace the successor too. The address the site's
    /// jump leads to, where the caller writes the jump to the detour.
    pub(super) fn evict_at(
        &mut self,
        key: Pid,
        tid: Tid,
        patch: &mut Patch,
    ) -> std::result::Result<RuntimeAddr, String> {
        let e = patch.evict.clone().ok_or("no instruction to evict")?;
        let space = &self.world.spaces[&key];
        let maps = crate::symbols::maps::read(space.pid).map_err(|e| e.to_string())?;
        let gaps = gaps(&maps, space.exe());
        let ((pun, pun_page), (tramp, tramp_page)) =
            places(&space.fast.puns, &gaps, patch).ok_or("no place for an evicted instruction")?;
        let code = e.trampoline(tramp)?;
        if code.len() as u64 > e.trampoline_room() {
            return Err("the evicted instructions grew when moved".into());
        }
        // A page mapped for the jump is the next one (the trampoline's
        // `Some(pages.len())`).
        let i = match pun_page {
            Some(i) => i,
            None => self.map_pun_page(key, tid, pun)?,
        };
        let j = match tramp_page {
            Some(j) => j,
            None => self.map_pun_page(key, tid, tramp)?,
        };
        let space = self.space_mut(key).map_err(|e| e.to_string())?;
        space.fast.puns[i].used.push((pun, JMP_LEN as u64));
        space.fast.puns[j].used.push((tramp, code.len() as u64));
        space
            .mem
            .write(RuntimeAddr(tramp), &code)
            .map_err(|e| format!("the evicted instructions cannot be written ({e})"))?;
        patch.take_eviction(pun, tramp);
        Ok(RuntimeAddr(pun))
    }

    /// Maps a pun page (space `key`, by `tid`) around `at`; its index.
    fn map_pun_page(&mut self, key: Pid, tid: Tid, at: u64) -> std::result::Result<usize, String> {
        let base = at & !(PAGE - 1);
        self.map_code(key, tid, base, PUN_PAGE)
            .map_err(|why| format!("no page could be mapped for an evicted instruction ({why})"))?;
        let puns = &mut self.space_mut(key).map_err(|e| e.to_string())?.fast.puns;
        puns.push(PunPage {
            base: RuntimeAddr(base),
            size: PUN_PAGE,
            used: Vec::new(),
        });
        Ok(puns.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_displacement_of_a_periodic_set() {
        // Byte 0 is 0xe9 (a 1-byte first instruction): every 256th.
        let e9 = detour::evicting_pun_rels(1);
        assert_eq!(e9, (256, 0xe9, 1));
        assert_eq!(nearest_rel(-1000, 1000, 5, e9), Some(0xe9 - 256));
        assert_eq!(nearest_rel(0, 1000, 5, e9), Some(0xe9));
        assert_eq!(nearest_rel(-1000, -30, 5, e9), Some(0xe9 - 512));
        assert_eq!(nearest_rel(300, 1000, 5, e9), Some(0x1e9));
        assert_eq!(nearest_rel(0x1ea, 0x2e9, 5, e9), None);
        // Byte 3 is 0xe9 (a 4-byte one): one run, 16 MiB below.
        let e9 = detour::evicting_pun_rels(4);
        assert_eq!(
            nearest_rel(-REACH, REACH, 5, e9),
            Some(-0x1600_0000 - 1),
            "the top of the run nearest 0"
        );
        assert_eq!(nearest_rel(0, REACH, 5, e9), None);
    }

    #[test]
    fn the_successors_displacement_ends_as_the_sites_began() {
        // A 1-byte first instruction: the site's displacement is e9, then
        // the successor's three low bytes.
        assert_eq!(detour::evicted_rels(1, 0x1234_56e9), (1 << 24, 0x12_3456));
        assert_eq!(
            detour::evicted_rels(2, 0xfedc_e9aa_u32 as i32),
            (1 << 16, 0xfedc)
        );
        // A 4-byte one: none of the successor's bytes are the site's.
        assert_eq!(detour::evicted_rels(4, 0xe900_0000_u32 as i32), (1, 0));
    }

    fn page(base: u64, used: &[(u64, u64)]) -> PunPage {
        PunPage {
            base: RuntimeAddr(base),
            size: PUN_PAGE,
            used: used.to_vec(),
        }
    }

    #[test]
    fn rooms_are_the_free_bytes_of_pages_and_the_gaps() {
        let pages = [page(0x10000, &[(0x10100, 5), (0x10000, 5)])];
        let rooms = rooms(&pages, &[(0x40000, 0x80000), (0x90000, 0x91000)], 20);
        assert_eq!(
            rooms,
            vec![
                Room {
                    lo: 0x10005,
                    hi: 0x10100,
                    page: Some(0)
                },
                Room {
                    lo: 0x10105,
                    hi: 0x12000,
                    page: Some(0)
                },
                Room {
                    lo: 0x40000,
                    hi: 0x80000 - PUN_PAGE + 20,
                    page: None
                },
            ],
            "a gap too small for a page has no room"
        );
    }

    /// Checks the two jumps `places` chose for a pun of `pun_free` bytes at
    /// `site`, whose successor is at `site + pun_free`: the bytes written
    /// make both jumps, each to its place.
    fn check(site: u64, pun_free: usize, pages: &[PunPage], gaps: &[(u64, u64)]) -> (u64, u64) {
        // The first instruction, then the successor: `mov $0, %ebx`.
        let first: &[u8] = match pun_free {
            1 => &[0x53],
            2 => &[0x31, 0xc0],
            3 => &[0x48, 0x89, 0xf8],
            _ => &[0x48, 0x83, 0xec, 0x10],
        };
        let mut code = first.to_vec();
        code.extend_from_slice(&[0xbb, 0, 0, 0, 0, 0xc3]);
        let successor = site + pun_free as u64;
        let mut patch = detour::plan_pun(&code, &[], site, site).expect("a pun");
        assert_eq!(patch.pun_free, pun_free);
        patch.evict = Some(detour::plan_evict(&code, site, &patch).expect("an eviction"));
        let ((pun, _), (tramp, _)) = places(pages, gaps, &patch).expect("places");
        let mut taken = patch.clone();
        taken.take_eviction(pun, tramp);
        let writes = detour::jump(&taken, pun + 0x1000)
            .unwrap_or_else(|| panic!("the jumps: {pun:#x} {tramp:#x} {taken:?}"));
        let at_site = &writes.iter().find(|(a, _)| *a == site).expect("site").1;
        assert_eq!(at_site.len(), pun_free + 5);
        let target = |at: u64, bytes: &[u8]| {
            assert_eq!(bytes[0], 0xe9);
            let rel = i32::from_le_bytes(bytes[1..5].try_into().unwrap());
            (at + 5).wrapping_add_signed(i64::from(rel))
        };
        assert_eq!(target(site, at_site), pun, "the site's jump");
        assert_eq!(
            target(successor, &at_site[pun_free..]),
            tramp,
            "the successor's jump"
        );
        assert!(pun.abs_diff(site) < REACH as u64 && tramp.abs_diff(successor) < REACH as u64);
        (pun, tramp)
    }

    #[test]
    fn both_jumps_land_in_free_room_for_each_first_length() {
        // Libraries just under the stack (randomisation off): a gap below.
        let site = 0x7fff_f7d5_8290;
        let gaps = [(0x7ffe_0000_0000, 0x7fff_f000_0000)];
        for pun_free in 1..=4 {
            let (pun, tramp) = check(site, pun_free, &[], &gaps);
            for at in [pun, tramp] {
                assert!((gaps[0].0..gaps[0].1).contains(&at), "{pun_free}: {at:#x}");
            }
            // The jump and the trampoline never overlap.
            assert!(pun + 5 <= tramp || tramp + 10 <= pun, "{pun_free}");
        }
    }

    #[test]
    fn a_page_already_mapped_is_used_first() {
        let site = 0x5555_5555_0000;
        let pages = [page(0x5555_5556_0000, &[])];
        let gaps = [(0x5555_0000_0000, 0x5555_5500_0000)];
        let (pun, tramp) = check(site, 1, &pages, &gaps);
        assert!((0x5555_5556_0000..0x5555_5556_2000).contains(&pun));
        let _ = tramp;
    }
}
