//! A writer killed (SIGKILL) at random points never leaves an existing output missing, empty or
//! partial: a reader sees either the old store or the new one.
//!
//! The real binary replaces a PEM bundle and an OpenSSL hashed directory (both layouts) over and
//! over, alternating between two certificate sets, and is killed after a pseudo-random delay drawn
//! from a fixed seed and spread over the measured duration of one run. After every kill each output
//! must equal, byte for byte, what was there before or what the writer was asked to write; a reader
//! thread checks the same thing continuously while the writers run. At the end a normal run must
//! succeed and remove the temporary entries that killed writers left behind.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // the shared test body reports what the kills hit

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anchorage_test_support::pki;

/// Seed of the delay schedule: a failure can be replayed with the same delays (relative to the
/// measured run time).
const SEED: u64 = 0x5eed_a7c4_0a6e_2026;
/// Kills per layout.
const ITERATIONS: usize = 30;
/// Extra kills allowed when too few landed while a writer had temporary entries on disk (a very
/// loaded machine can stretch the start-up part of a run).
const MAX_EXTRA_ITERATIONS: usize = 60;
/// Kills that must land mid-write for the test to have exercised the window it is about.
const MIN_MID_WRITE: usize = 4;
/// CAs of each set's own, disjoint between the sets.
const OWN_CAS: usize = 150;
/// Delays are drawn from `[0, SPREAD × one run's duration]`, so a few writers also finish.
const SPREAD: f64 = 1.25;

const PEM: &str = "bundle.pem";
const DIR: &str = "certs";

/// xorshift64*: a tiny deterministic generator, enough for a delay schedule.
struct Schedule(u64);

impl Schedule {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One directory entry as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    /// A symbolic link: its target and the bytes it resolves to.
    Link(PathBuf, Vec<u8>),
}

type DirContents = BTreeMap<String, Entry>;

/// The two certificate sets' outputs, as written by an uninterrupted run.
struct Expected {
    pem: [Vec<u8>; 2],
    dir: [DirContents; 2],
}

impl Expected {
    fn pem_set(&self, bytes: &[u8]) -> Option<usize> {
        self.pem.iter().position(|p| p == bytes)
    }

    fn dir_set(&self, contents: &DirContents) -> Option<usize> {
        self.dir.iter().position(|d| d == contents)
    }
}

/// Reads every entry of `dir` (following symbolic links, recording their targets).
fn read_dir_contents(dir: &Path) -> std::io::Result<DirContents> {
    let mut out = DirContents::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = dir.join(&name);
        let value = if entry.file_type()?.is_symlink() {
            Entry::Link(fs::read_link(&path)?, fs::read(&path)?)
        } else {
            Entry::File(fs::read(&path)?)
        };
        out.insert(name, value);
    }
    Ok(out)
}

fn layout_args(layout: &str) -> Vec<String> {
    vec!["--openssl-dir-layout".into(), layout.into()]
}

/// `bundle build --mozilla <set> --pem <out>/bundle.pem --openssl-dir <out>/certs`.
fn build_command(work: &Path, set: &str, out: &Path, layout: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.current_dir(work)
        .env_remove("ANCHORAGE_LOG")
        .args(["bundle", "build", "--mozilla", set, "--pem"])
        .arg(out.join(PEM))
        .arg("--openssl-dir")
        .arg(out.join(DIR))
        .args(layout_args(layout))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn build(work: &Path, set: &str, out: &Path, layout: &str) -> Duration {
    let start = Instant::now();
    let output = build_command(work, set, out, layout).output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "build of {set} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// Temporary entries beside the outputs: `.<name>.anchorage-tmp-<pid>-*`.
fn temp_entries(out: &Path) -> Vec<String> {
    let prefixes = [
        format!(".{PEM}.anchorage-tmp-"),
        format!(".{DIR}.anchorage-tmp-"),
    ];
    let mut names: Vec<String> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    names.sort();
    names
}

#[derive(Debug, Default)]
struct ReaderStats {
    pem_reads: usize,
    dir_reads: usize,
    /// Directory reads that overlapped a swap (the directory opened was no longer the live one
    /// when the read ended), so the snapshot may be of a tree being removed: not judged.
    dir_reads_across_swap: usize,
}

/// Reads both outputs until `stop`, failing on anything that is neither set's output.
fn reader(out: &Path, expected: &Expected, stop: &AtomicBool) -> Result<ReaderStats, String> {
    let pem_path = out.join(PEM);
    let dir_path = out.join(DIR);
    let mut stats = ReaderStats::default();
    while !stop.load(Ordering::Relaxed) {
        let mut pem = Vec::new();
        File::open(&pem_path)
            .and_then(|mut f| f.read_to_end(&mut pem))
            .map_err(|e| format!("reader: cannot open or read {}: {e}", pem_path.display()))?;
        if expected.pem_set(&pem).is_none() {
            return Err(format!(
                "reader: {} is neither output ({} bytes)",
                pem_path.display(),
                pem.len()
            ));
        }
        stats.pem_reads += 1;

        // Open the live directory once and read everything through that descriptor
        // (/proc/self/fd/N), so paths cannot jump to the next tree in the middle of the read.
        let dir = File::open(&dir_path)
            .map_err(|e| format!("reader: cannot open {}: {e}", dir_path.display()))?;
        let opened = dir.metadata().map_err(|e| e.to_string())?;
        if !opened.is_dir() {
            return Err(format!("reader: {} is not a directory", dir_path.display()));
        }
        let via_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let contents = read_dir_contents(&via_fd);
        // A replaced directory is never swapped back in, and its inode number cannot be reused
        // while we hold it open: if it is still the live one now, it was live during the read.
        let still_live = fs::metadata(&dir_path)
            .is_ok_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
        if !still_live {
            stats.dir_reads_across_swap += 1;
        } else {
            let contents = contents.map_err(|e| {
                format!(
                    "reader: cannot read the live directory {}: {e}",
                    dir_path.display()
                )
            })?;
            if expected.dir_set(&contents).is_none() {
                return Err(format!(
                    "reader: {} holds neither set ({} entries)",
                    dir_path.display(),
                    contents.len()
                ));
            }
            stats.dir_reads += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(stats)
}

fn kill_writers_at_random_points(layout: &str) {
    let tmp = anchorage_test_support::tempdir().unwrap();
    let work = tmp.path();
    // Set A and set B: Mozilla's roots plus CAs of their own, enough of them that every swap
    // writes new files (entries the live tree already holds are linked, not written, so sets
    // that differed by a few CAs would leave almost no window to kill a writer in).
    for (set, prefix) in [("set-a", "A"), ("set-b", "B")] {
        fs::create_dir(work.join(set)).unwrap();
        for i in 0..OWN_CAS {
            pki::root_ca(&format!("Kill Test {prefix}{i}"))
                .write_pem(&work.join(set), &format!("{prefix}{i:03}.crt"));
        }
    }
    let sets = ["set-a", "set-b"];

    // What an uninterrupted run writes for each set.
    let reference = |set: &str| {
        let out = work.join(format!("ref-{set}"));
        build(work, set, &out, layout);
        (
            fs::read(out.join(PEM)).unwrap(),
            read_dir_contents(&out.join(DIR)).unwrap(),
        )
    };
    let (pem_a, dir_a) = reference(sets[0]);
    let (pem_b, dir_b) = reference(sets[1]);
    assert_ne!(pem_a, pem_b);
    assert!(dir_a.len() > 100 && dir_b.len() > 100);
    let expected = Arc::new(Expected {
        pem: [pem_a, pem_b],
        dir: [dir_a, dir_b],
    });

    // The outputs under test start as set A. The reader starts then, so the run time measured
    // next (a run replacing the other set) is the one under the test's own load.
    let out = work.join("out");
    build(work, sets[0], &out, layout);
    let stop = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let (out, expected, stop) = (out.clone(), Arc::clone(&expected), Arc::clone(&stop));
        std::thread::spawn(move || reader(&out, &expected, &stop))
    };
    let mut timings: Vec<Duration> = (0..6)
        .map(|i| build(work, sets[(i + 1) % 2], &out, layout))
        .collect();
    timings.sort();
    let run = timings[timings.len() / 2];
    let mut state = [0usize, 0usize]; // which set the PEM and the directory hold now
    assert_eq!(expected.pem_set(&fs::read(out.join(PEM)).unwrap()), Some(0));

    let mut schedule = Schedule(SEED ^ layout.bytes().fold(0, |h, b| h * 31 + u64::from(b)));
    let (mut killed, mut finished, mut mid_write, mut mid_pem, mut mid_dir) = (0, 0, 0, 0, 0);
    let mut pem_new_dir_old = 0;
    let mut temporaries_seen = std::collections::BTreeSet::new();
    let mut iteration = 0;
    while iteration < ITERATIONS
        || (mid_write < MIN_MID_WRITE && iteration < ITERATIONS + MAX_EXTRA_ITERATIONS)
    {
        let target = (iteration + 1) % 2; // B, A, B, ...: every run is a real change
        let delay = run.mul_f64(SPREAD * schedule.next_unit());
        let mut child = build_command(work, sets[target], &out, layout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL; harmless if it already exited
        let status = child.wait().unwrap(); // reaped, so the next run sees the pid is dead
        let pid = child.id();
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            assert!(status.success(), "writer failed on its own: {status}");
            finished += 1;
        }

        let leftovers: Vec<String> = temp_entries(&out)
            .into_iter()
            .filter(|n| n.contains(&format!(".anchorage-tmp-{pid}-")))
            .collect();
        if !leftovers.is_empty() {
            temporaries_seen.extend(leftovers.iter().cloned());
            mid_write += 1;
            mid_pem += usize::from(leftovers.iter().any(|n| n.starts_with(&format!(".{PEM}."))));
            mid_dir += usize::from(leftovers.iter().any(|n| n.starts_with(&format!(".{DIR}."))));
        }

        let pem = fs::read(out.join(PEM)).unwrap_or_else(|e| {
            panic!("iteration {iteration} (killed after {delay:?}): PEM output missing: {e}")
        });
        assert!(!pem.is_empty(), "iteration {iteration}: PEM output empty");
        let pem_set = expected.pem_set(&pem).unwrap_or_else(|| {
            panic!(
                "iteration {iteration} (killed after {delay:?}): PEM output is partial or foreign ({} bytes)",
                pem.len()
            )
        });
        assert!(
            pem_set == state[0] || pem_set == target,
            "iteration {iteration}: PEM holds neither the old nor the new set"
        );
        let dir = read_dir_contents(&out.join(DIR)).unwrap_or_else(|e| {
            panic!("iteration {iteration} (killed after {delay:?}): directory unreadable: {e}")
        });
        let dir_set = expected.dir_set(&dir).unwrap_or_else(|| {
            panic!(
                "iteration {iteration} (killed after {delay:?}): directory is partial or foreign ({} entries)",
                dir.len()
            )
        });
        assert!(
            dir_set == state[1] || dir_set == target,
            "iteration {iteration}: directory holds neither the old nor the new set"
        );
        if status.success() {
            assert_eq!(
                (pem_set, dir_set),
                (target, target),
                "a finished run wrote both"
            );
        }
        if pem_set == target && dir_set != target {
            pem_new_dir_old += 1;
        }
        state = [pem_set, dir_set];
        iteration += 1;
    }

    stop.store(true, Ordering::Relaxed);
    let reads = reader_thread
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));

    // A normal run succeeds and removes what killed writers left behind.
    let stale = temp_entries(&out);
    build(work, sets[0], &out, layout);
    assert_eq!(
        temp_entries(&out),
        Vec::<String>::new(),
        "temporary leftovers"
    );
    assert_eq!(expected.pem_set(&fs::read(out.join(PEM)).unwrap()), Some(0));
    assert_eq!(
        expected.dir_set(&read_dir_contents(&out.join(DIR)).unwrap()),
        Some(0)
    );

    println!(
        "kill test ({layout} layout): one run takes {run:?}; {iteration} writers: {killed} killed, \
         {finished} finished; {mid_write} killed mid-write (temporary entries left: PEM {mid_pem}, \
         directory {mid_dir}); {pem_new_dir_old} left the new PEM beside the old directory; \
         {} temporary entries of killed writers seen, all removed by later runs ({} by the final \
         one); reader: {} PEM reads, {} directory reads \
         ({} more overlapped a swap)",
        temporaries_seen.len(),
        stale.len(),
        reads.pem_reads,
        reads.dir_reads,
        reads.dir_reads_across_swap
    );
    assert!(
        mid_write >= MIN_MID_WRITE,
        "only {mid_write} of {iteration} kills landed while a writer had temporary entries; the \
         test did not exercise the window"
    );
    assert!(reads.pem_reads > 0 && reads.dir_reads > 0);
}

#[test]
fn killed_writer_leaves_old_or_new_files_layout() {
    kill_writers_at_random_points("files");
}

#[test]
fn killed_writer_leaves_old_or_new_links_layout() {
    kill_writers_at_random_points("links");
}
