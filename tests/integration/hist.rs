//! `-c --hist`: a log2 histogram of each probe's call durations in the
//! summary. The counts are checked exactly: in JSON against a script's
//! histograms of the same returns' durations, in text by their totals.

use crate::events::{assert_one_error_line, of_kind, show, str_field, trace_json};
use crate::fixtures::{fixture, run_rtrace, Variant};

#[test]
fn hist_json_buckets_count_every_return_in_its_power_of_two() {
    let prog = fixture("count", Variant::Pie);
    // `--json -c` writes no call: a script's histograms of the same
    // durations are the reference.
    let args = [
        "-c",
        "--hist",
        "-s",
        "work",
        "-s",
        "twice",
        "-x",
        "work:return { @work = hist(duration) } twice:return { @twice = hist(duration) }",
    ];
    let (run, events) = trace_json("hist_json", &args, &prog, &["50"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let summaries = of_kind(&events, "summary");
    assert_eq!(summaries.len(), 2, "{}", show(&events));
    for (symbol, calls) in [("work", 50), ("twice", 1)] {
        let summary = summaries
            .iter()
            .find(|s| str_field(s, "symbol") == symbol)
            .unwrap_or_else(|| panic!("no summary of {symbol}"));
        assert_eq!(summary["calls"], calls);
        let buckets = summary["hist"].as_array().expect("hist");
        let total: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(total, calls, "{summary}");
        // Contiguous powers of two, the first and last not empty.
        for pair in buckets.windows(2) {
            assert_eq!(pair[0]["high"], pair[1]["low"], "{summary}");
        }
        for b in buckets {
            let (low, high) = (b["low"].as_i64().unwrap(), b["high"].as_i64().unwrap());
            assert_eq!(high, 2 * low, "{b}");
        }
        assert_ne!(buckets[0]["count"], 0);
        assert_ne!(buckets[buckets.len() - 1]["count"], 0);
        // Each bucket holds exactly the returns whose duration falls in it:
        // as the script counted them.
        let script = of_kind(&events, "hist")
            .into_iter()
            .find(|h| h["name"] == format!("@{symbol}"))
            .unwrap_or_else(|| panic!("no script histogram of {symbol}: {}", show(&events)));
        assert_eq!(&summary["hist"], &script["buckets"], "{symbol}");
        assert!(of_kind(&events, "return").is_empty(), "{}", show(&events));
    }
}

/// `name [probe], ns:` then bucket lines, up to an empty line: the counts.
fn drawn_counts(text: &str, title: &str) -> Option<Vec<u64>> {
    let mut lines = text.lines().skip_while(|l| *l != title);
    lines.next()?;
    Some(
        lines
            .take_while(|l| l.starts_with('['))
            .map(|l| {
                let count = l[16..24].trim();
                count
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}: count of {l:?}"))
            })
            .collect(),
    )
}

#[test]
fn hist_text_draws_one_histogram_per_probe_with_calls() {
    let prog = fixture("count", Variant::Pie);
    let args = [
        "-c", "--hist", "-s", "work", "-s", "twice", "-s", "work+0x4",
    ];
    let run = run_rtrace(&args, &prog, &["50"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let work = drawn_counts(&run.stderr, "work [work], ns:").expect(&run.stderr);
    let twice = drawn_counts(&run.stderr, "twice [twice], ns:").expect(&run.stderr);
    assert_eq!(work.iter().sum::<u64>(), 50, "{}", run.stderr);
    assert_eq!(twice, [1], "{}", run.stderr);
    assert!(
        drawn_counts(&run.stderr, "work [work+0x4], ns:").is_none(),
        "hits have no time: {}",
        run.stderr
    );
    // After the table's total line.
    let total = run.stderr.find("  total\n").expect("table");
    assert!(run.stderr.find("work [work], ns:").unwrap() > total);
}

#[test]
fn hist_without_summary_is_a_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--hist", "-s", "work"], &prog, &[]);
    let line = assert_one_error_line(&run, 2, "rtrace --hist without -c");
    assert_eq!(
        line,
        "rtrace: --hist draws histograms in the summary; give -c with it (see 'rtrace --help')"
    );
}
