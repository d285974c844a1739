//! The DWARF line table of one file: `FILE:LINE` probes and naming an
//! address by its source line.
//!
//! Owns reading every line program (gimli) into one flat table, parsed on
//! the first question and cached by the `ElfFile`, failure included, so a
//! program without `FILE:LINE` probes never pays for it. It knows nothing of
//! the file: the caller hands it the DWARF sections and says what is code.
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::read::Corrupt;
use crate::addr::LinkAddr;
use crate::error::{Error, Result};

/// One row of a DWARF line program, reduced to what `FILE:LINE` probes and
/// naming an address by its line need.
#[derive(Clone, Copy, Debug)]
struct LineRow {
    /// Index into [`LineTable::files`].
    file: u32,
    /// 0 when the row's code has no source line (compiler-generated code).
    line: u32,
    addr: u64,
    /// Which sequence (contiguous run of code, typically one function or one CU's
    /// `.text`) the row belongs to; unique across the whole file.
    seq: u32,
    /// `is_stmt`: a place a breakpoint on the line should stop at. The other
    /// rows only name the line of the code they start.
    stmt: bool,
}

/// One sequence of a line program: the code `[start, end)`, described by
/// `rows[first..last]` in address order.
#[derive(Clone, Copy, Debug)]
struct LineSequence {
    start: u64,
    end: u64,
    first: usize,
    last: usize,
}

/// Every line program of the file, flattened.
#[derive(Debug, Default)]
pub(super) struct LineTable {
    /// Full source paths (comp dir + include dir + file name), interned.
    files: Vec<PathBuf>,
    rows: Vec<LineRow>,
    /// The sequences that cover code, sorted by start: the index for naming
    /// an address by its line.
    sequences: Vec<LineSequence>,
}

impl LineTable {
    /// See [`ElfFile::line_addresses`](super::ElfFile::line_addresses): `is_code` says whether an address is
    /// in an executable segment, `function_of` gives the function
    /// containing an address (its start).
    pub(super) fn addresses(
        &self,
        file: &str,
        line: u32,
        is_code: impl Fn(LinkAddr) -> bool,
        function_of: impl Fn(LinkAddr) -> Option<LinkAddr>,
    ) -> Result<Vec<LinkAddr>> {
        let table = self;
        let wanted: PathBuf = Path::new(file)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let file_matches: Vec<bool> = table
            .files
            .iter()
            .map(|f| !wanted.as_os_str().is_empty() && f.ends_with(&wanted))
            .collect();
        /// Where a row's code belongs: its function, else its sequence.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        enum Owner {
            Function(LinkAddr),
            Sequence(u32),
        }
        let mut first_by_owner: HashMap<Owner, u64> = HashMap::new();
        let mut lines_with_code: Vec<u32> = Vec::new();
        for row in table.rows.iter().filter(|r| r.stmt && r.line != 0) {
            let is_file = file_matches
                .get(row.file as usize)
                .copied()
                .unwrap_or(false);
            let addr = LinkAddr(row.addr);
            if !is_file || !is_code(addr) {
                continue;
            }
            if row.line != line {
                lines_with_code.push(row.line);
                continue;
            }
            let owner = match function_of(addr) {
                Some(f) => Owner::Function(f),
                None => Owner::Sequence(row.seq),
            };
            first_by_owner
                .entry(owner)
                .and_modify(|a| *a = (*a).min(row.addr))
                .or_insert(row.addr);
        }
        let mut addrs: Vec<LinkAddr> = first_by_owner.into_values().map(LinkAddr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if lines_with_code.is_empty() {
            return Err(Error::NoLineInfo {
                file: file.to_string(),
                line,
                searched: Vec::new(),
                unbuilt: None,
            });
        }
        lines_with_code.sort_unstable();
        lines_with_code.dedup();
        Err(Error::NoCodeAtLine {
            file: file.to_string(),
            line,
            nearest: nearest_lines(&lines_with_code, line),
        })
    }

    /// See [`ElfFile::line_of`](super::ElfFile::line_of).
    pub(super) fn line_of(&self, addr: LinkAddr) -> Option<(PathBuf, u32)> {
        let table = self;
        let row = table
            .rows
            .iter()
            .find(|r| r.stmt && r.line != 0 && r.addr == addr.get())?;
        Some((table.files.get(row.file as usize)?.clone(), row.line))
    }

    /// See [`ElfFile::line_at`](super::ElfFile::line_at).
    pub(super) fn line_at(&self, addr: LinkAddr) -> Option<(&Path, u32)> {
        let table = self;
        let a = addr.get();
        let i = table.sequences.partition_point(|s| s.start <= a);
        // Sequences do not overlap in a linked file, but a corrupt or unusual
        // one may nest them: the nearest few that start before `a` are tried.
        let candidates = table.sequences.get(i.saturating_sub(4)..i)?;
        let seq = candidates.iter().rev().find(|s| a < s.end)?;
        let rows = table.rows.get(seq.first..seq.last)?;
        let k = rows.partition_point(|r| r.addr <= a);
        let row = rows.get(k.checked_sub(1)?)?;
        if row.line == 0 {
            return None;
        }
        Some((table.files.get(row.file as usize)?.as_path(), row.line))
    }

    /// Parses every line program reachable from `.debug_info`'s units;
    /// `section` gives a DWARF section's contents by name, and only
    /// sequences that start in code (`is_code`) index the table.
    /// What does not parse is reported through `corrupt`.
    pub(super) fn parse<'a>(
        section: impl Fn(&str) -> Result<&'a [u8]>,
        is_code: impl Fn(LinkAddr) -> bool,
        corrupt: Corrupt<'_>,
    ) -> Result<LineTable> {
        use gimli::{EndianSlice, LittleEndian};

        let load = |id: gimli::SectionId| -> Result<_> {
            Ok(EndianSlice::new(section(id.name())?, LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(load)?;
        let dwarf_err = |e: gimli::Error| corrupt(format!("DWARF: {e}"));

        let mut table = LineTable::default();
        let mut interned: HashMap<PathBuf, u32> = HashMap::new();
        let mut seq: u32 = 0;
        let mut units = dwarf.units();
        while let Some(header) = units.next().map_err(dwarf_err)? {
            let unit = dwarf.unit(header).map_err(dwarf_err)?;
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            // File index → interned id, per unit (indices are per line program).
            let mut unit_files: HashMap<u64, u32> = HashMap::new();
            let mut rows = program.rows();
            // Where the current sequence's rows begin in `table.rows`.
            let mut first = table.rows.len();
            while let Some((header, row)) = rows.next_row().map_err(dwarf_err)? {
                if row.end_sequence() {
                    let start = table.rows.get(first).map(|r| r.addr);
                    if let Some(start) = start.filter(|&a| is_code(LinkAddr(a))) {
                        table.sequences.push(LineSequence {
                            start,
                            end: row.address(),
                            first,
                            last: table.rows.len(),
                        });
                    }
                    first = table.rows.len();
                    seq = seq.wrapping_add(1);
                    continue;
                }
                let line = row
                    .line()
                    .map_or(0, |l| u32::try_from(l.get()).unwrap_or(0));
                let file = match unit_files.get(&row.file_index()) {
                    Some(&id) => id,
                    None => {
                        let path = match row.file(header) {
                            Some(entry) => file_path(&dwarf, &unit, header, entry, corrupt)?,
                            None => PathBuf::new(),
                        };
                        let next = u32::try_from(table.files.len())
                            .map_err(|_| corrupt("too many source files".into()))?;
                        let id = *interned.entry(path.clone()).or_insert(next);
                        if id == next {
                            table.files.push(path);
                        }
                        unit_files.insert(row.file_index(), id);
                        id
                    }
                };
                table.rows.push(LineRow {
                    file,
                    line,
                    addr: row.address(),
                    seq,
                    stmt: row.is_stmt(),
                });
            }
            // A sequence never spans units, even if a program forgets its end.
            seq = seq.wrapping_add(1);
        }
        table.sequences.sort_by_key(|s| (s.start, s.end));
        Ok(table)
    }
}

/// The lines of `sorted` (ascending, unique, without `line`) to suggest for
/// `line`: the nearest before and the nearest after; when one side has none, the
/// two nearest on the other side.
pub(super) fn nearest_lines(sorted: &[u32], line: u32) -> Vec<u32> {
    let split = sorted.partition_point(|&l| l < line);
    let (before, after) = sorted.split_at(split);
    match (before, after) {
        ([.., b], [a, ..]) => vec![*b, *a],
        ([], after) => after.iter().take(2).copied().collect(),
        (before, []) => before.iter().rev().take(2).rev().copied().collect(),
    }
}

/// The full path of a line program's file entry: the unit's compilation directory,
/// then the entry's include directory (unless it is directory 0, the
/// compilation directory), then its name, each replacing what came before when
/// it is absolute (as `addr2line` and gdb render it).
fn file_path<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    header: &gimli::LineProgramHeader<R>,
    entry: &gimli::FileEntry<R>,
    corrupt: Corrupt<'_>,
) -> Result<PathBuf> {
    let dwarf_err = |e: gimli::Error| corrupt(format!("DWARF: {e}"));
    let string = |attr| -> Result<String> {
        let r = dwarf.attr_string(unit, attr).map_err(dwarf_err)?;
        let s = r.to_string_lossy().map_err(dwarf_err)?;
        Ok(s.into_owned())
    };
    let mut path = PathBuf::new();
    if let Some(comp_dir) = &unit.comp_dir {
        path.push(comp_dir.to_string_lossy().map_err(dwarf_err)?.as_ref());
    }
    // Directory 0 is the compilation directory itself (DWARF 5 lists it
    // again as entry 0; gimli hands back DW_AT_comp_dir for it in DWARF 4):
    // pushed twice, a relative one (`./stdio-common`, as Debian's
    // -fdebug-prefix-map leaves it) would be doubled.
    if entry.directory_index() != 0 {
        if let Some(dir) = entry.directory(header) {
            path.push(string(dir)?);
        }
    }
    path.push(string(entry.path_name())?);
    Ok(path)
}
